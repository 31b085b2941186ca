//! Temporary keys for a container or a Kubernetes pod (ipc's `s3_workload`): a web identity
//! token exchanged at STS (`AssumeRoleWithWebIdentity`, which takes no signature: the token is
//! the proof), or a container credentials endpoint's answer. Token files are read at every
//! exchange, since the orchestrator replaces them before they expire. Tokens and keys never
//! appear in errors or logs.

use std::io;
use std::path::Path;
use std::time::Duration;

use musicfs_ipc::s3_workload::Workload;
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use reqwest::blocking::Client;
use rusty_s3::Credentials;

/// A workload's keys and the client that gets them.
pub struct WorkloadKeys {
    workload: Workload,
    client: Client,
}

impl WorkloadKeys {
    pub fn new(workload: Workload, timeout: Duration, ca_file: Option<&Path>) -> io::Result<Self> {
        let client = crate::web::keys_client("AWS credentials", timeout, ca_file)?;
        Ok(Self { workload, client })
    }

    /// New keys, with when they expire (seconds since the epoch).
    pub fn fetch(&self) -> io::Result<(Credentials, Option<i64>)> {
        match &self.workload {
            Workload::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts,
            } => {
                let token = read_token(token_file, "web identity token")?;
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("Action", "AssumeRoleWithWebIdentity")
                    .append_pair("Version", "2011-06-15")
                    .append_pair("RoleArn", role_arn)
                    .append_pair("RoleSessionName", session_name)
                    .append_pair("WebIdentityToken", &token)
                    .finish();
                let request = self
                    .client
                    .post(format!("{sts}/"))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body);
                let (status, text) = sts_answer(request)?;
                let refused = format!(
                    "STS refused role {role_arn} for the web identity in {}",
                    token_file.display()
                );
                sts_keys(status, &text, &refused)
            }
            Workload::Container {
                url,
                token,
                token_file,
            } => {
                let authorization = match (token_file, token) {
                    (Some(file), _) => Some(read_token(file, "container authorization token")?),
                    (None, Some(token)) => Some(token.expose().to_owned()),
                    (None, None) => None,
                };
                let mut request = self.client.get(url);
                if let Some(value) = authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, value);
                }
                let what = "the container credentials endpoint";
                let response = request
                    .send()
                    .map_err(|e| crate::web::unanswered(what, e))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(io::Error::other(format!("{what} {url} answered {status}")));
                }
                let body = response
                    .bytes()
                    .map_err(|e| crate::web::unanswered(what, e))?;
                let value: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|_| io::Error::other(format!("{what} {url} answered no JSON")))?;
                let field = |name: &str| value[name].as_str().filter(|s| !s.is_empty());
                let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey"))
                else {
                    let why = format!("{what} {url} answered no AccessKeyId and SecretAccessKey");
                    return Err(io::Error::other(why));
                };
                let keys = match field("Token") {
                    Some(session) => Credentials::new_with_token(id, secret, session),
                    None => Credentials::new(id, secret),
                };
                let expires = field("Expiration").and_then(crate::web::parse_rfc3339);
                Ok((keys, expires))
            }
        }
    }
}

/// A token file's contents, trimmed. Not readable, it leaves the origin without keys: an
/// error of the origin's, not of the file asked for (so not `NotFound` or `PermissionDenied`).
fn read_token(file: &Path, what: &str) -> io::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| io::Error::other(format!("the {what} {}: {e}", file.display())))?;
    Ok(text.trim().to_owned())
}

/// STS's answer to `request`: its status and body.
pub(crate) fn sts_answer(
    request: reqwest::blocking::RequestBuilder,
) -> io::Result<(reqwest::StatusCode, String)> {
    let unanswered = |e| crate::web::unanswered("STS", e);
    let response = request.send().map_err(unanswered)?;
    let status = response.status();
    Ok((status, response.text().map_err(unanswered)?))
}

/// The keys in STS's answer (`AssumeRole`, `AssumeRoleWithWebIdentity`), or `refused` and
/// what STS said, when it refused.
pub(crate) fn sts_keys(
    status: reqwest::StatusCode,
    text: &str,
    refused: &str,
) -> io::Result<(Credentials, Option<i64>)> {
    if !status.is_success() {
        let said = [xml_field(text, "Code"), xml_field(text, "Message")];
        let said: Vec<String> = said.into_iter().flatten().collect();
        let why = format!("{refused}: {status} {}", said.join(": "));
        return Err(io::Error::other(why));
    }
    let field = |name| {
        xml_field(text, name).ok_or_else(|| io::Error::other(format!("STS's answer has no {name}")))
    };
    let keys = Credentials::new_with_token(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        field("SessionToken")?,
    );
    let expires = xml_field(text, "Expiration").and_then(|at| crate::web::parse_rfc3339(&at));
    Ok((keys, expires))
}

/// The text of the first `<name>` element of an XML answer.
pub(crate) fn xml_field(xml: &str, name: &str) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut inside = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => inside = start.local_name().as_ref() == name.as_bytes(),
            Event::Text(text) if inside => return Some(text.decode().ok()?.trim().to_owned()),
            Event::End(_) => inside = false,
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sts_answers_are_read_by_element() {
        let xml = "<AssumeRoleWithWebIdentityResponse \
                   xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                   <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA1</AccessKeyId>\
                   <SecretAccessKey>s3cret</SecretAccessKey><SessionToken>tok</SessionToken>\
                   <Expiration>2026-11-27T20:00:00Z</Expiration></Credentials>\
                   </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(xml_field(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(
            xml_field(xml, "Expiration").as_deref(),
            Some("2026-11-27T20:00:00Z")
        );
        assert_eq!(xml_field(xml, "Code"), None);
    }
}
