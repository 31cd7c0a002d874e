//! The command line beside the server: [`args`] (what clap parses), [`commands`] (the bodies
//! of `serve`, `check`, `routes`, `send`, `healthcheck` and `fic`), [`routes`] (which sinks an
//! event would reach), [`send`] (a request the source's verifier accepts, to test routes without
//! the provider), [`replay`] (`replay` and `discard` of spooled events) and [`fic`] (Fatture in
//! Cloud subscriptions).

pub mod args;
pub mod commands;
pub mod fic;
pub mod replay;
pub mod routes;
pub mod send;
