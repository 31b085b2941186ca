//! AWS Signature Version 4 for the requests fetchd signs itself (STS's `AssumeRole`, in
//! `s3_role.rs`; the bucket's own requests are signed by rusty-s3): the canonical request,
//! the string to sign and the key derived from the secret, as AWS's documentation gives them.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// A request to sign: `headers` with lowercase names, among them `host` and `x-amz-date`
/// (`YYYYMMDDTHHMMSSZ`); `query` already in canonical form (sorted, encoded).
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// The `Authorization` header for `request`, signed with `secret` for `region` and `service`.
pub fn authorization(
    key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
    request: &Request,
) -> String {
    let mut headers: Vec<(&str, &str)> = request.headers.to_vec();
    headers.sort_by_key(|(name, _)| *name);
    let amz_date = headers
        .iter()
        .find(|(name, _)| *name == "x-amz-date")
        .map_or("", |(_, value)| *value);
    let date = amz_date.get(..8).unwrap_or("");
    let signed: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        request.method,
        request.path,
        request.query,
        hex(&Sha256::digest(request.payload))
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed}, \
         Signature={signature}"
    )
}

/// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC).
pub fn amz_date(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's Signature Version 4 test suite (`get-vanilla`, `get-vanilla-query-order-key-case`):
    /// the signatures AWS publishes for these requests.
    #[test]
    fn aws_test_suite_requests_get_aws_signatures() {
        let headers = [
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        let sign = |query: &str| {
            let request = Request {
                method: "GET",
                path: "/",
                query,
                headers: &headers,
                payload: b"",
            };
            let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
            authorization("AKIDEXAMPLE", secret, "us-east-1", "service", &request)
        };
        assert_eq!(
            sign(""),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(sign("Param1=value1&Param2=value2")
            .ends_with("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
    }

    #[test]
    fn dates_are_written_as_aws_writes_them() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
    }
}
