//! The Bitwarden side: server URLs, the organization API key, the token and import requests,
//! the read side of the public API, and the server's error format.

pub mod budget;
pub mod client;
pub mod members;
pub mod read;
pub mod urls;
pub mod wire;

/// Kept at its old path (the connector names it here); it lives in [`crate::net`].
pub use crate::net::RetryPolicy;
pub use budget::{Limits, RequestStats};
pub use client::{ApiKey, BitwardenClient, Retrying};
pub use urls::Urls;
