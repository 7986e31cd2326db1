//! The one integration-test binary: every test that runs real programs (the casegate
//! binary, Dovecot, an SMTP server, a browser) lives in a module here and shares the
//! harness in `support/`.

mod architecture;
mod classify_corpus;
mod corpus_ingest;
mod daemon;
mod ingest;
mod mailstack_smoke;
mod notify;
mod notify_delivery;
mod operators;
mod reply_corpus;
mod scenarios;
mod support;
mod survey_browser;
mod survey_flow;
mod survey_report;
mod survey_web;
mod workflow;
