//! The one integration-test binary: every test that runs real programs (the casegate
//! binary, Dovecot, an SMTP server, a browser) lives in a module here and shares the
//! harness in `support/`.

mod architecture;
mod attachments_mail;
mod bounce_corpus;
mod bounces;
mod case_browser;
mod case_web;
mod classify_corpus;
mod corpus_ingest;
mod daemon;
mod ingest;
mod lifecycle;
mod lifecycle_postgres;
mod loops;
mod mailstack_smoke;
mod migrate_store;
mod notify;
mod notify_delivery;
mod oauth2;
mod operators;
mod postgres_pipeline;
mod postgres_tls;
mod reply_corpus;
mod scenarios;
mod several_nodes;
mod spam;
mod support;
mod survey_browser;
mod survey_flow;
mod survey_report;
mod survey_web;
mod workflow;
