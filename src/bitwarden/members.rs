//! The public API's member endpoints (bitwarden/server
//! `src/Api/AdminConsole/Public/Controllers/MembersController.cs`): `POST /public/members/{id}/
//! revoke` and `/restore`, `GET /public/members/{id}` and `PUT /public/members/{id}`. Each is
//! one request through the request budget (each member's path has its own counter in the
//! cloud). A 400 carries the server's reason ("Already revoked.", "Already active.", a seat
//! limit) and a 404 says the member is gone: both are answers, not failures of the request.

use anyhow::{Context, anyhow};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::budget::Kind;
use super::client::{ApiError, BitwardenClient, location, redirect_message};
use super::wire::error_message;

/// How the server answered a member request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAnswer {
    /// 200.
    Done,
    /// 400, with the server's message.
    Refused(String),
    /// 404: no such member in the organization.
    Gone,
}

/// The server's message when a revoke finds the member revoked already
/// (`RevokeUser/v2/Errors.cs`, `UserAlreadyRevoked`).
pub const ALREADY_REVOKED: &str = "Already revoked.";
/// The server's message when a restore finds the member active (`RestoreUser/v1/Errors.cs`,
/// `AlreadyActive`).
pub const ALREADY_ACTIVE: &str = "Already active.";

/// The server's message when a revoke would leave no confirmed owner
/// (`RevokeUser/v2/Errors.cs`, `MustHaveConfirmedOwner`).
pub const LAST_OWNER: &str = "Organization must have at least one confirmed owner.";

/// What a rename must send back: the member's type and its direct collection access, as
/// `GET /public/members/{id}` shows them (`PUT` replaces the collections with the body's).
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDetails {
    pub kind: i64,
    pub external_id: Option<String>,
    pub collections: Vec<Value>,
    /// A Custom member's permissions (sent back unchanged).
    pub permissions: Option<Value>,
}

impl BitwardenClient {
    /// `POST /public/members/{id}/revoke`.
    pub async fn revoke_member(&self, id: &str) -> anyhow::Result<MemberAnswer> {
        let url = format!("{}/public/members/{id}/revoke", self.urls().api);
        self.member_request("revoking a member", Kind::MemberLifecycle, &url, None)
            .await
            .map(|(a, _)| a)
    }

    /// `POST /public/members/{id}/restore`.
    pub async fn restore_member(&self, id: &str) -> anyhow::Result<MemberAnswer> {
        let url = format!("{}/public/members/{id}/restore", self.urls().api);
        self.member_request("restoring a member", Kind::MemberLifecycle, &url, None)
            .await
            .map(|(a, _)| a)
    }

    /// `GET /public/members/{id}`: `None` when the member is gone (404).
    pub async fn member_details(&self, id: &str) -> anyhow::Result<Option<MemberDetails>> {
        let url = format!("{}/public/members/{id}", self.urls().api);
        let (answer, body) = self
            .member_request("reading a member", Kind::Member, &url, None)
            .await?;
        match answer {
            MemberAnswer::Gone => Ok(None),
            MemberAnswer::Refused(m) => Err(anyhow!(ApiError {
                status: Some(400),
                message: m,
            }))
            .with_context(|| format!("GET {url}")),
            MemberAnswer::Done => {
                let v: Value = serde_json::from_str(&body)
                    .with_context(|| format!("GET {url}: the answer is not JSON"))?;
                Ok(Some(MemberDetails {
                    kind: v.get("type").and_then(Value::as_i64).unwrap_or(2),
                    external_id: v
                        .get("externalId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    collections: v
                        .get("collections")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    permissions: v.get("permissions").filter(|p| !p.is_null()).cloned(),
                }))
            }
        }
    }

    /// `PUT /public/members/{id}` with the member's type, the new externalId and its
    /// collections as read (groups omitted: the server leaves them alone).
    pub async fn rename_member(
        &self,
        id: &str,
        details: &MemberDetails,
        external_id: &str,
    ) -> anyhow::Result<MemberAnswer> {
        let url = format!("{}/public/members/{id}", self.urls().api);
        let collections: Vec<Value> = details
            .collections
            .iter()
            .map(|c| {
                json!({
                    "id": c.get("id"),
                    "readOnly": c.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
                    "hidePasswords": c.get("hidePasswords").and_then(Value::as_bool).unwrap_or(false),
                    "manage": c.get("manage").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect();
        let mut body = json!({
            "type": details.kind,
            "externalId": external_id,
            "collections": collections,
        });
        if let Some(p) = &details.permissions {
            body["permissions"] = p.clone();
        }
        self.member_request("renaming a member", Kind::MemberUpdate, &url, Some(&body))
            .await
            .map(|(a, _)| a)
    }

    /// One member request: a 401 or 403 from the API gets one fresh token; 200, 400 and 404
    /// are answers; anything else is an error naming the request.
    async fn member_request(
        &self,
        what: &str,
        kind: Kind,
        url: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(MemberAnswer, String)> {
        let method = match kind {
            Kind::Member => reqwest::Method::GET,
            Kind::MemberUpdate => reqwest::Method::PUT,
            _ => reqwest::Method::POST,
        };
        let mut fresh_token_tried = false;
        loop {
            let token = self.token().await?;
            let resp = self
                .send_with_retry(what, kind, url, || {
                    let r = self
                        .http()
                        .request(method.clone(), url)
                        .bearer_auth(&token)
                        .header("Accept", "application/json");
                    match body {
                        Some(b) => r.json(b),
                        None => r,
                    }
                })
                .await
                .with_context(|| format!("{method} {url}"))?;
            let status = resp.status();
            let resp_location = location(&resp);
            let text = resp.text().await.unwrap_or_default();
            let answer = match status {
                StatusCode::OK | StatusCode::NO_CONTENT => MemberAnswer::Done,
                StatusCode::BAD_REQUEST => MemberAnswer::Refused(error_message(400, &text)),
                StatusCode::NOT_FOUND => MemberAnswer::Gone,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if !fresh_token_tried => {
                    fresh_token_tried = true;
                    self.drop_token().await;
                    continue;
                }
                s => {
                    let message = if s.is_redirection() {
                        redirect_message(s, &resp_location)
                    } else {
                        error_message(s.as_u16(), &text)
                    };
                    return Err(anyhow!(ApiError {
                        status: Some(s.as_u16()),
                        message,
                    }))
                    .with_context(|| format!("{method} {url}"));
                }
            };
            return Ok((answer, text));
        }
    }
}
