//! The survey tests' harness: a survey page served in-process with a small HTTP client
//! (`site`, `http`), and surveys through the real binary and its outbox folder (`by_mail`).

pub mod by_mail;
pub mod http;
pub mod site;
