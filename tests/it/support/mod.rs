//! Shared test harness: temporary installations running the real binary, real servers on
//! 127.0.0.1 (among them an OAuth2 authorization server), mails as people write them, and
//! the notification and survey setups that several test files build on.

pub mod browser;
pub mod casegate;
pub mod corpus;
pub mod mail;
pub mod mailstack;
pub mod notify;
pub mod oauth_server;
pub mod postgres;
pub mod survey;
pub mod web;
