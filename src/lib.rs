//! casegate — an email-driven ticketing gateway.
//!
//! The modules in the order of a mail's journey (`docs/architecture.md` tells it one step
//! a paragraph):
//!
//! 1. [`source`]: where mail comes from in the daemon — IMAP ([`source::imap`]) and
//!    Maildir ([`source::maildir`]) — and the one database writer they share; the
//!    command line's `ingest` reads files. [`daemon`] runs the sources, the outbox sender
//!    and the web pages under one shutdown; [`ownership`] decides which mailboxes this
//!    node works when several share one database (a lease per mailbox).
//! 2. [`prepare`]: what a mail's bytes say on their own — [`parse`] (MIME, charsets,
//!    attachments, reply trimming, forwards; never panics, bounded), [`classify`]
//!    (machine mail: auto-replies, bulk, bounces, our own loops), the content fingerprint.
//! 3. [`ingest`]: the pipeline — seen before? then one store read for a snapshot
//!    ([`store::snapshot`], routing by [`route`]), a pure decision, the store applying it.
//! 4. [`decide`]: the decisions, pure — who the sender is on the case ([`authorize`]),
//!    the commands in the mail ([`commands`], [`fields`]), the status machine
//!    ([`workflow`]) — as a [`decide::Plan`] of effects.
//! 5. [`store`]: SQLite (attachment blobs and raw-mail packs beside it) or PostgreSQL
//!    (several nodes on one database), behind one query interface ([`store::db`]); one
//!    unit of work applies a plan ([`store::apply`]).
//! 6. [`consequences`]: what the events of a plan lead to — survey offers ([`survey`])
//!    and notifications ([`notify`], which also sends them).
//! 7. At the edges: [`cli`] (the command line), [`web`] (the pages: survey, case page, "My
//!    cases", downloads), [`config`], [`oauth`] (OAuth2 tokens and SASL
//!    XOAUTH2/OAUTHBEARER, for the IMAP source and the SMTP sender); for operators,
//!    [`metrics`] (Prometheus metrics and health checks), [`systemd`] (readiness and
//!    watchdog for the service manager) and [`reconcile`] (server folders against the
//!    journal); [`lifecycle`] (retention, purges, erasure, cases that close themselves) and
//!    [`migrate`] (moving an installation from SQLite into PostgreSQL).
//!
//! Underneath everything: [`case`] (the case model: statuses, events, reasons, tokens),
//! [`address`], [`digest`], [`backoff`], [`signed`] (signed personal links; [`links`] makes them). Nothing imports a module above it; a test
//! (`tests/it/architecture.rs`) keeps it so.

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
pub mod lifecycle;
pub mod links;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod oauth;
pub mod ownership;
pub mod parse;
pub mod prepare;
pub mod reconcile;
pub mod route;
pub mod signed;
pub mod source;
pub mod store;
pub mod survey;
pub mod systemd;
pub mod web;
pub mod workflow;
