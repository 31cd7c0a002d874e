//! Command-line tools beside `serve`: `routes` (which sinks an event would reach) and `send`
//! (a request the source's verifier accepts, to test routes without the provider).

pub mod fic;
pub mod replay;
pub mod routes;
pub mod send;
