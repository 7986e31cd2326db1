//! `[accounts]` (sender domain → account) and `[account_access]` (who may name which
//! accounts in an `Account:` line).

use std::collections::BTreeMap;

use super::{Check, ConfigError};
use crate::address::{Address, AddressPattern};

/// `[accounts]`, keyed by the domain as addresses spell it (lower case).
pub(super) fn accounts(check: &Check, raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut accounts = BTreeMap::new();
    for (domain, account) in raw {
        let key = format!("accounts.{domain:?}");
        let probe = Address::parse(&format!("x@{domain}"))
            .ok_or_else(|| check.invalid(&key, "the key must be a mail domain such as \"customer.example\""))?;
        if account.trim().is_empty() {
            return Err(check.invalid(&key, "the account name is empty"));
        }
        accounts.insert(probe.domain().to_string(), account.trim().to_string());
    }
    Ok(accounts)
}

/// `[account_access]`; every account named must be one of `accounts`.
pub(super) fn account_access(
    check: &Check,
    raw: BTreeMap<String, Vec<String>>,
    accounts: &BTreeMap<String, String>,
) -> Result<Vec<(AddressPattern, Vec<String>)>, ConfigError> {
    let mut access = Vec::new();
    for (who, names) in raw {
        let key = format!("account_access.{who:?}");
        let pattern = AddressPattern::parse(&who)
            .ok_or_else(|| check.invalid(&key, "the key must be an address or an @domain entry"))?;
        if let Some(unknown) = names.iter().find(|name| !accounts.values().any(|a| a == *name)) {
            return Err(check.invalid(&key, format!("{unknown:?} is not an account listed under [accounts]")));
        }
        access.push((pattern, names));
    }
    Ok(access)
}
