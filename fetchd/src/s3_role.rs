//! Temporary keys for a role a profile assumes (ipc's `s3_role`): STS's `AssumeRole`, signed
//! (`sigv4.rs`) with the keys of the role's source, which are got as any other (given, from a
//! credential process, an SSO role, or another role in turn) and renewed on their own.

use std::io;
use std::path::Path;
use std::time::Duration;

use musicfs_ipc::s3_role::{AssumeRole, RoleSource};
use reqwest::blocking::Client;
use rusty_s3::Credentials;
use url::Url;

use crate::s3_keys::{Keys, Source};
use crate::s3_sso::SsoKeys;
use crate::s3_workload::{sts_answer, sts_keys, xml_field};
use crate::sigv4;

/// A role's keys, and the keys it is assumed with.
pub struct RoleKeys {
    role: AssumeRole,
    source: Keys,
    client: Client,
}

impl RoleKeys {
    pub fn new(
        role: AssumeRole,
        profile: &str,
        timeout: Duration,
        ca_file: Option<&Path>,
    ) -> io::Result<Self> {
        let source = match &*role.source {
            RoleSource::Keys(keys) => Keys::given(keys),
            RoleSource::Process(command) => Keys::temporary(Source::Process(command.clone())),
            RoleSource::Sso(sso) => {
                let sso = SsoKeys::new(sso.clone(), profile.to_owned(), timeout, ca_file)?;
                Keys::temporary(Source::Sso(Box::new(sso)))
            }
            RoleSource::Role(inner) => {
                let inner = RoleKeys::new(inner.clone(), profile, timeout, ca_file)?;
                Keys::temporary(Source::Role(Box::new(inner)))
            }
        };
        let client = crate::web::keys_client("STS", timeout, ca_file)?;
        Ok(Self {
            role,
            source,
            client,
        })
    }

    /// New keys for the role, with when they expire (seconds since the epoch).
    pub fn fetch(&self) -> io::Result<(Credentials, Option<i64>)> {
        let role = &self.role;
        let source = self.source.get()?;
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "AssumeRole")
            .append_pair("Version", "2011-06-15")
            .append_pair("RoleArn", &role.role_arn)
            .append_pair("RoleSessionName", &role.session_name);
        if let Some(id) = &role.external_id {
            form.append_pair("ExternalId", id);
        }
        if let Some(seconds) = role.duration_seconds {
            form.append_pair("DurationSeconds", &seconds.to_string());
        }
        let body = form.finish();
        let url = Url::parse(&format!("{}/", role.sts))
            .map_err(|e| io::Error::other(format!("STS endpoint {}: {e}", role.sts)))?;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_owned(),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let date = sigv4::amz_date(now);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let mut headers = vec![
            ("content-type", content_type),
            ("host", host.as_str()),
            ("x-amz-date", date.as_str()),
        ];
        if let Some(token) = source.token() {
            headers.push(("x-amz-security-token", token));
        }
        let request = sigv4::Request {
            method: "POST",
            path: url.path(),
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
        };
        let signed =
            sigv4::authorization(source.key(), source.secret(), &role.region, "sts", &request);
        let mut sent = self.client.post(url.clone()).body(body.clone());
        for (name, value) in &headers {
            sent = sent.header(*name, *value);
        }
        let (status, text) = sts_answer(sent.header(reqwest::header::AUTHORIZATION, signed))?;
        if xml_field(&text, "Code").as_deref() == Some("ExpiredToken") {
            self.source.expired();
        }
        let refused = format!("STS refused to assume role {}", role.role_arn);
        sts_keys(status, &text, &refused)
    }
}
