//! Who the sender is for a case: requester, contact, watcher, same-account member, staff,
//! admin, or stranger — and whether the mail is authenticated enough to trust a staff or
//! admin address.
//!
//! Mail is easy to forge. When `authserv_id` is configured, staff and admin powers come
//! from the From address only if the receiving server's `Authentication-Results` header
//! (the topmost one carrying that authserv-id; RFC 8601 has receivers strip forged ones)
//! shows DMARC pass for the From domain, or DKIM pass for an aligned domain. Without
//! `authserv_id` the operator has chosen to trust the mail path and addresses are taken
//! as written.

use crate::address::Address;
use crate::case::ParticipantRole;
use crate::config::Config;
use crate::parse::InboundMail;

/// Everything the sender is, for one case. Several can hold at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub requester: bool,
    pub contact: bool,
    pub watcher: bool,
    /// Sender's domain maps to the case's account.
    pub same_account: bool,
    pub staff: bool,
    pub admin: bool,
}

impl Standing {
    /// May take part in the case's thread (and add watchers by Cc).
    pub fn is_participant(&self) -> bool {
        self.requester || self.contact || self.watcher || self.same_account || self.staff || self.admin
    }

    /// The single word for logs and the permission table, strongest first.
    pub fn role_name(&self) -> &'static str {
        if self.admin {
            "admin"
        } else if self.staff {
            "staff"
        } else if self.requester {
            "requester"
        } else if self.contact {
            "contact"
        } else if self.watcher {
            "watcher"
        } else if self.same_account {
            "same-account"
        } else {
            "stranger"
        }
    }
}

/// Staff/admin powers for an address, given whether the mail is authenticated.
pub fn privileges(config: &Config, sender: &Address, authenticated: bool) -> (bool, bool) {
    if !authenticated {
        return (false, false);
    }
    (config.is_staff(sender), config.is_admin(sender))
}

/// The sender's standing on a case with these participants and this account.
pub fn standing(
    config: &Config,
    sender: &Address,
    authenticated: bool,
    participants: &[(Address, ParticipantRole)],
    case_account: Option<&str>,
) -> Standing {
    let has = |role| participants.iter().any(|(a, r)| a == sender && *r == role);
    let (staff, admin) = privileges(config, sender, authenticated);
    Standing {
        requester: has(ParticipantRole::Requester),
        contact: has(ParticipantRole::Contact),
        watcher: has(ParticipantRole::Watcher),
        same_account: case_account.is_some() && config.account_for(sender) == case_account,
        staff,
        admin,
    }
}

/// Whether the mail's From can be believed for staff/admin purposes (see module docs).
pub fn is_authenticated(config: &Config, mail: &InboundMail) -> bool {
    let Some(authserv_id) = config.authserv_id.as_deref() else {
        return true;
    };
    let Some(from) = mail.from_address() else {
        return false;
    };
    let Some(results) = mail
        .headers_named("authentication-results")
        .find(|v| authserv_id_of(v).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))
    else {
        return false;
    };
    passes_for(results, from.domain())
}

/// The From domain when the receiving server (`authserv_id`, topmost header) says DMARC
/// failed for it: the mail claims a sender whose domain disowns it.
pub fn dmarc_failure(config: &Config, mail: &InboundMail) -> Option<String> {
    let authserv_id = config.authserv_id.as_deref()?;
    let from = mail.from_address()?;
    let results = mail
        .headers_named("authentication-results")
        .find(|v| authserv_id_of(v).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)))?;
    results.split(';').skip(1).find_map(|clause| {
        let clause = strip_comments(clause).to_ascii_lowercase();
        let mut words = clause.split_whitespace();
        (words.next() == Some("dmarc=fail")).then_some(())?;
        let domain =
            words.filter_map(|w| w.strip_prefix("header.from=")).next().map(|d| d.trim_matches('"').to_string());
        domain.is_none_or(|d| d == from.domain()).then(|| from.domain().to_string())
    })
}

fn authserv_id_of(value: &str) -> Option<&str> {
    value.split(';').next().map(|s| s.split_whitespace().next().unwrap_or_default())
}

/// Looks for `dmarc=pass … header.from=<domain>` or `dkim=pass … header.d=<aligned>`.
fn passes_for(results: &str, from_domain: &str) -> bool {
    for clause in results.split(';').skip(1) {
        let clause = strip_comments(clause).to_ascii_lowercase();
        let mut words = clause.split_whitespace();
        let Some(method) = words.next() else { continue };
        let props: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let prop = |name: &str| props.iter().find(|(k, _)| *k == name).map(|(_, v)| v.trim_matches('"'));
        match method {
            "dmarc=pass" if prop("header.from").is_none_or(|d| d == from_domain) => return true,
            "dkim=pass" => {
                let signer = prop("header.d").or_else(|| prop("header.i").map(|i| i.rsplit('@').next().unwrap_or(i)));
                if signer.is_some_and(|d| aligned(d, from_domain)) {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Relaxed DKIM alignment (RFC 7489): the signing domain equals the From domain or one is
/// a subdomain of the other. (A full organisational-domain check needs the public suffix
/// list; requiring one to contain the other is the safe subset.)
fn aligned(signer: &str, from: &str) -> bool {
    signer == from
        || from.ends_with(&format!(".{signer}")) && signer.contains('.')
        || signer.ends_with(&format!(".{from}"))
}

fn strip_comments(s: &str) -> String {
    let mut depth = 0usize;
    s.chars()
        .filter(|&c| match c {
            '(' => {
                depth += 1;
                false
            }
            ')' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ => depth == 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(
            &format!("system_addresses = [\"support@example.com\"]\nstaff = [\"@support.example.com\"]\nadmins = [\"admin@example.com\"]\n{extra}\n[accounts]\n\"customer.example\" = \"Customer Inc\""),
            Path::new("/x/c.toml"),
        )
        .unwrap()
    }

    fn mail(headers: &str) -> InboundMail {
        crate::parse::parse(format!("{headers}\r\n\r\nhi").as_bytes()).unwrap()
    }

    #[test]
    fn without_authserv_id_addresses_are_trusted() {
        let c = config("");
        assert!(is_authenticated(&c, &mail("From: ann@support.example.com")));
    }

    #[test]
    fn with_authserv_id_staff_needs_dmarc_or_aligned_dkim_from_our_server() {
        let c = config("authserv_id = \"mx.example.com\"");
        let ok = "From: ann@support.example.com\r\nAuthentication-Results: mx.example.com; spf=pass smtp.mailfrom=support.example.com; dkim=pass (good) header.d=support.example.com; dmarc=pass (p=reject) header.from=support.example.com";
        assert!(is_authenticated(&c, &mail(ok)));
        let dkim_only =
            "From: ann@support.example.com\r\nAuthentication-Results: mx.example.com; dkim=pass header.i=@example.com";
        assert!(is_authenticated(&c, &mail(dkim_only)), "parent-domain signature is aligned (relaxed)");
        let forged = "From: ann@support.example.com\r\nAuthentication-Results: mx.example.com; dmarc=fail header.from=support.example.com";
        assert!(!is_authenticated(&c, &mail(forged)));
        let other_server = "From: ann@support.example.com\r\nAuthentication-Results: evil.example; dmarc=pass header.from=support.example.com";
        assert!(!is_authenticated(&c, &mail(other_server)));
        let wrong_domain = "From: ann@support.example.com\r\nAuthentication-Results: mx.example.com; dkim=pass header.d=attacker.example; dmarc=pass header.from=attacker.example";
        assert!(!is_authenticated(&c, &mail(wrong_domain)));
        // Only the topmost header from our server counts: a forged one below is ignored.
        let below = "From: ann@support.example.com\r\nAuthentication-Results: mx.example.com; dmarc=fail header.from=support.example.com\r\nAuthentication-Results: mx.example.com; dmarc=pass header.from=support.example.com";
        assert!(!is_authenticated(&c, &mail(below)));
    }

    #[test]
    fn a_dmarc_failure_is_read_only_from_our_server_and_for_the_from_domain() {
        let c = config("authserv_id = \"mx.example.com\"");
        let fail = "From: bob@bank.example\r\nAuthentication-Results: mx.example.com; spf=fail; dmarc=fail (p=reject) header.from=bank.example";
        assert_eq!(dmarc_failure(&c, &mail(fail)).as_deref(), Some("bank.example"));
        let pass =
            "From: bob@bank.example\r\nAuthentication-Results: mx.example.com; dmarc=pass header.from=bank.example";
        assert_eq!(dmarc_failure(&c, &mail(pass)), None);
        let elsewhere =
            "From: bob@bank.example\r\nAuthentication-Results: evil.example; dmarc=fail header.from=bank.example";
        assert_eq!(dmarc_failure(&c, &mail(elsewhere)), None);
        let other_domain =
            "From: bob@bank.example\r\nAuthentication-Results: mx.example.com; dmarc=fail header.from=other.example";
        assert_eq!(dmarc_failure(&c, &mail(other_domain)), None);
        assert_eq!(dmarc_failure(&config(""), &mail(fail)), None, "without authserv_id nothing is trusted");
    }

    #[test]
    fn standing_combines_roles_account_and_privileges() {
        let c = config("");
        let a = |s: &str| Address::parse(s).unwrap();
        let people = vec![
            (a("jane@customer.example"), ParticipantRole::Requester),
            (a("w@other.example"), ParticipantRole::Watcher),
        ];
        let s = standing(&c, &a("jane@customer.example"), true, &people, Some("Customer Inc"));
        assert!(s.requester && s.same_account && !s.staff && s.role_name() == "requester");
        let s = standing(&c, &a("bob@customer.example"), true, &people, Some("Customer Inc"));
        assert!(s.is_participant() && s.role_name() == "same-account");
        let s = standing(&c, &a("eve@other.example"), true, &people, Some("Customer Inc"));
        assert!(!s.is_participant() && s.role_name() == "stranger");
        let s = standing(&c, &a("ann@support.example.com"), false, &people, None);
        assert!(!s.is_participant(), "unauthenticated staff address is a stranger");
        let s = standing(&c, &a("admin@example.com"), true, &people, None);
        assert!(s.admin && s.role_name() == "admin");
    }
}
