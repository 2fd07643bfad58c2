//! The Bitwarden side: server URLs, the organization API key, the token and import requests,
//! the read side of the public API, and the server's error format.

pub mod client;
pub mod read;
pub mod urls;
pub mod wire;

pub use client::{ApiKey, BitwardenClient, RetryPolicy};
pub use urls::Urls;
