//! Shared test harness: temporary installations and real servers on 127.0.0.1.

pub mod casegate;
pub mod corpus;
pub mod mailstack;
