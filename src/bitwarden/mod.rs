//! The Bitwarden side: server URLs, the organization API key, the token and import requests,
//! the read side of the public API, and the server's error format.

pub mod budget;
pub mod client;
pub mod read;
pub mod urls;
pub mod wire;

pub use budget::{Limits, RequestStats};
pub use client::{ApiKey, BitwardenClient, Blocked, RateLimited, RetryPolicy};
pub use urls::Urls;
