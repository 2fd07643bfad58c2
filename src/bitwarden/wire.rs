//! Request and response JSON of the Bitwarden API: the import body (camelCase, strings only),
//! the token response and the server's error format.

use serde::{Deserialize, Serialize};

use crate::engine::{Batch, Plan};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireGroup<'a> {
    pub name: &'a str,
    pub external_id: &'a str,
    pub member_external_ids: &'a [crate::engine::Id],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMember<'a> {
    pub email: &'a str,
    pub external_id: &'a str,
    pub deleted: bool,
}

/// `POST /public/organization/import` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportRequest<'a> {
    pub groups: Vec<WireGroup<'a>>,
    pub members: Vec<WireMember<'a>>,
    pub overwrite_existing: bool,
    pub large_import: bool,
    pub invite_users_after_provisioning: bool,
}

impl<'a> ImportRequest<'a> {
    /// The request for one batch of a plan.
    pub fn from_batch(plan: &'a Plan, batch: &Batch, invite: bool) -> ImportRequest<'a> {
        ImportRequest {
            groups: plan.groups[batch.groups.clone()]
                .iter()
                .map(|g| WireGroup {
                    name: &g.name,
                    external_id: &g.external_id,
                    member_external_ids: &g.members,
                })
                .collect(),
            members: plan.members[batch.members.clone()]
                .iter()
                .map(|m| WireMember {
                    email: &m.email,
                    external_id: &m.external_id,
                    deleted: m.is_removal(),
                })
                .collect(),
            overwrite_existing: batch.overwrite_existing,
            large_import: batch.large_import,
            invite_users_after_provisioning: invite,
        }
    }

    /// The body as JSON, in a buffer sized up front (a group request can be megabytes: growing
    /// the buffer by doubling would copy it several times).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        // quotes, commas and field names; escapes are rare and only grow the buffer once
        let members: usize = self
            .members
            .iter()
            .map(|m| m.email.len() + m.external_id.len() + 48)
            .sum();
        let groups: usize = self
            .groups
            .iter()
            .map(|g| {
                g.name.len()
                    + g.external_id.len()
                    + 56
                    + g.member_external_ids
                        .iter()
                        .map(|id| id.len() + 3)
                        .sum::<usize>()
            })
            .sum();
        let mut out = Vec::with_capacity(members + groups + 128);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }
}

/// `POST /connect/token` success body.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default = "default_expiry")]
    pub expires_in: u64,
}

fn default_expiry() -> u64 {
    3600
}

/// Finds a key case-insensitively (the server mixes PascalCase and camelCase).
fn get_ci<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v serde_json::Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Turns an error body into a readable message: the message plus every validation error.
pub fn error_message(status: u16, body: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let Some(mut v) = json else {
        let text = body.trim();
        return if text.is_empty() {
            match status {
                429 => "rate limit exceeded; try again later".into(),
                _ => format!("HTTP {status} with no message"),
            }
        } else {
            let short: String = text.chars().take(300).collect();
            short
        };
    };
    if let Some(model) = get_ci(&v, "ErrorModel") {
        v = model.clone();
    }
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = get_ci(&v, "message").and_then(|m| m.as_str()) {
        parts.push(m.to_string());
    }
    if let Some(d) = get_ci(&v, "error_description").and_then(|m| m.as_str()) {
        parts.push(d.to_string());
    } else if let Some(e) = get_ci(&v, "error").and_then(|m| m.as_str()) {
        parts.push(e.to_string());
    }
    if let Some(errs) = get_ci(&v, "validationErrors").and_then(|e| e.as_object()) {
        for (field, msgs) in errs {
            let msgs: Vec<&str> = match msgs {
                serde_json::Value::Array(a) => a.iter().filter_map(|m| m.as_str()).collect(),
                serde_json::Value::String(s) => vec![s.as_str()],
                _ => vec![],
            };
            for m in msgs {
                if field.is_empty() {
                    parts.push(m.to_string());
                } else {
                    parts.push(format!("{field}: {m}"));
                }
            }
        }
    }
    if parts.is_empty() {
        let short: String = body.trim().chars().take(300).collect();
        parts.push(short);
    }
    parts.dedup();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diff::{
        GroupAction, GroupChange, MemberAction, MemberChange, RemovalReason,
    };

    #[test]
    fn import_body_is_camel_case_with_strings() {
        let plan = Plan {
            members: vec![
                MemberChange {
                    external_id: "123".into(),
                    email: "a@x.com".into(),
                    action: MemberAction::Invite,
                    member_id: None,
                    previous_external_id: None,
                },
                MemberChange {
                    external_id: "456".into(),
                    email: "b@x.com".into(),
                    action: MemberAction::Remove(RemovalReason::Disabled),
                    member_id: None,
                    previous_external_id: None,
                },
            ],
            groups: vec![GroupChange {
                external_id: "g".into(),
                name: "Red Team".into(),
                members: vec!["123".into()],
                fingerprint: String::new(),
                action: GroupAction::Create,
                previous_member_count: None,
                previous_name: None,
                removed_members: 0,
                repairs_drift: false,
            }],
            ..Plan::default()
        };
        let batch = Batch {
            members: 0..2,
            groups: 0..1,
            large_import: false,
            overwrite_existing: false,
        };
        let req = ImportRequest::from_batch(&plan, &batch, false);
        let json = String::from_utf8(req.to_json().unwrap()).unwrap();
        // the buffer was sized up front, not grown
        assert!(req.to_json().unwrap().capacity() >= json.len());
        assert_eq!(
            json,
            r#"{"groups":[{"name":"Red Team","externalId":"g","memberExternalIds":["123"]}],"members":[{"email":"a@x.com","externalId":"123","deleted":false},{"email":"b@x.com","externalId":"456","deleted":true}],"overwriteExisting":false,"largeImport":false,"inviteUsersAfterProvisioning":false}"#
        );
    }

    #[test]
    fn error_bodies_become_sentences() {
        assert_eq!(
            error_message(
                400,
                r#"{"message":"The model state is invalid.","validationErrors":{"Members[0].Email":["The Email field is not a valid e-mail address."]}}"#
            ),
            "The model state is invalid.; Members[0].Email: The Email field is not a valid e-mail address."
        );
        assert_eq!(
            error_message(
                400,
                r#"{"error":"invalid_client","error_description":"bad"}"#
            ),
            "bad"
        );
        assert_eq!(
            error_message(400, r#"{"ErrorModel":{"Message":"Nope"}}"#),
            "Nope"
        );
        assert_eq!(
            error_message(429, ""),
            "rate limit exceeded; try again later"
        );
        assert_eq!(
            error_message(502, "<html>Bad gateway</html>"),
            "<html>Bad gateway</html>"
        );
    }
}
