//! casegate — an email-driven ticketing gateway.
//!
//! One module per step of a mail's journey:
//!
//! - [`parse`]: raw bytes → [`parse::InboundMail`] (never panics, bounded);
//!   [`parse::reply`] trims quoted history from replies.
//! - [`classify`]: machine mail (auto-replies, bulk, bounces, our own loops).
//! - [`address`]: validated addresses and the staff/admin patterns.
//! - [`source`]: where mail comes from in the daemon — IMAP ([`source::imap`]) and
//!   Maildir ([`source::maildir`]) — and the one database writer they share.
//! - [`daemon`]: `casegate run`, the sources and the outbox sender under one shutdown.
//! - [`survey`]: signed survey links, the survey page, answers by web and by mail, the report.

pub mod address;
pub mod authorize;
pub mod backoff;
pub mod case;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod config;
pub mod consequences;
pub mod daemon;
pub mod decide;
pub mod digest;
pub mod fields;
pub mod ingest;
pub mod notify;
pub mod parse;
pub mod prepare;
pub mod route;
pub mod source;
pub mod store;
pub mod survey;
pub mod web;
pub mod workflow;
