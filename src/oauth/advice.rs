//! What an administrator checks when the token endpoint issued a token but the mail
//! server refused it: the usual causes for each provider and grant, in the words of the
//! provider's admin consoles.

use crate::config::{Grant, OAuth2Config, Provider};

/// Which server refused the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
}

/// The advice for a token refused by the `protocol` server for `user`.
pub fn refused(settings: &OAuth2Config, protocol: Protocol, user: &str) -> String {
    let imap = protocol == Protocol::Imap;
    match (&settings.provider, &settings.grant) {
        (Provider::Microsoft { .. }, Grant::ClientCredentials) => {
            let (permission, enabled) = if imap {
                (
                    "IMAP.AccessAsApp",
                    "IMAP is enabled for the mailbox (Exchange admin center, the mailbox's Email apps)".to_string(),
                )
            } else {
                (
                    "SMTP.SendAsApp",
                    format!(
                        "SMTP AUTH is enabled for the mailbox (Set-CASMailbox -Identity {user} \
                         -SmtpClientAuthenticationDisabled $false)"
                    ),
                )
            };
            format!(
                "Microsoft issued a token, but Exchange Online does not let the app in as {user}. An administrator \
                 checks: (1) the app registration has the application permission {permission} of Office 365 \
                 Exchange Online, with admin consent granted; (2) the app's service principal is registered in \
                 Exchange Online (New-ServicePrincipal -AppId <client_id> -ObjectId <object id of the Enterprise \
                 application>); (3) the service principal has the mailbox permission (Add-MailboxPermission \
                 -Identity {user} -User <service principal id> -AccessRights FullAccess); (4) {enabled}. Changes \
                 take effect after up to an hour."
            )
        }
        (Provider::Microsoft { .. }, _) => {
            let (scope, enabled) = if imap {
                ("https://outlook.office.com/IMAP.AccessAsUser.All", "IMAP")
            } else {
                ("https://outlook.office.com/SMTP.Send", "SMTP AUTH")
            };
            format!(
                "Microsoft issued a token, but Exchange Online refused it for {user}: the account that signed in \
                 with `casegate oauth authorize` must be {user} (or have access to it), the token's scope must \
                 include {scope}, and {enabled} must be enabled for the mailbox."
            )
        }
        (Provider::Google, Grant::JwtBearer { .. }) => format!(
            "Google issued a token, but Gmail refused it for {user}: domain-wide delegation of the service \
             account's client ID must include https://mail.google.com/, {user} must be a user of the Workspace \
             domain, and {} must be allowed for it.",
            if imap { "IMAP access" } else { "SMTP" }
        ),
        (Provider::Google, _) => format!(
            "Google issued a token, but Gmail refused it for {user}: the account that signed in with `casegate \
             oauth authorize` must be {user}, the scope must be https://mail.google.com/, and {} must be allowed \
             for it.",
            if imap { "IMAP access" } else { "SMTP" }
        ),
        (Provider::Generic, _) => format!(
            "the token endpoint issued a token, but the mail server refused it for {user}: check that the mail \
             server accepts tokens of this issuer, that the token is issued for {user}, and the scope."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(provider: Provider, grant: Grant) -> OAuth2Config {
        OAuth2Config {
            table: "mailbox[0].oauth2".into(),
            provider,
            token_url: "https://login.example/token".into(),
            authorize_url: None,
            client_id: Some("app".into()),
            client_secret: None,
            scope: None,
            grant,
        }
    }

    #[test]
    fn app_only_access_to_microsoft_names_permission_service_principal_and_mailbox_permission() {
        let ms = settings(Provider::Microsoft { tenant: "contoso.onmicrosoft.com".into() }, Grant::ClientCredentials);
        let imap = refused(&ms, Protocol::Imap, "support@contoso.com");
        for words in ["IMAP.AccessAsApp", "New-ServicePrincipal", "Add-MailboxPermission -Identity support@contoso.com"]
        {
            assert!(imap.contains(words), "{words}: {imap}");
        }
        let smtp = refused(&ms, Protocol::Smtp, "support@contoso.com");
        assert!(smtp.contains("SMTP.SendAsApp") && smtp.contains("SmtpClientAuthenticationDisabled"), "{smtp}");
    }

    #[test]
    fn delegated_and_google_access_name_their_own_causes() {
        let file = Grant::RefreshToken { file: "t".into() };
        let ms = settings(Provider::Microsoft { tenant: "t".into() }, file.clone());
        assert!(refused(&ms, Protocol::Imap, "u@x").contains("IMAP.AccessAsUser.All"));
        let google = settings(Provider::Google, Grant::JwtBearer { key_file: "k".into() });
        assert!(refused(&google, Protocol::Smtp, "u@x").contains("domain-wide delegation"));
        assert!(refused(&settings(Provider::Generic, file), Protocol::Imap, "u@x").contains("issued for u@x"));
    }
}
