//! An S3 bucket read with an AWS profile's IAM Identity Center (SSO) role, on a real mount:
//! the keys come from the SSO portal for the token `aws sso login` left in `~/.aws/sso/cache`.
//! AWS's portal cannot run here; a stand-in on 127.0.0.1 (`musicfs_tests::sso_portal`) answers
//! as it does, reached through `AWS_ENDPOINT_URL_SSO` and `AWS_ENDPOINT_URL_SSO_OIDC` as the
//! AWS tools reach one. The bucket is a real S3 server checking signatures (s3s-fs).

use std::path::Path;
use std::time::Duration;

use musicfs_tests::corpus::{noise_library, noise_track_path};
use musicfs_tests::remote::{mount_with_env, origin, put_tracks, wait_down, wait_for, BUCKET};
use musicfs_tests::s3server::S3Server;
use musicfs_tests::sso_portal::{Portal, SsoPortal};

/// `~/.aws/sso/cache/<SHA-1 of "corp">.json`, as `aws sso login` names the session's token.
const TOKEN_FILE: &str = ".aws/sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json";

/// A token file as `aws sso login` writes it for session `corp`, expiring `from_now` seconds
/// from now (in the past if negative).
fn token_file(token: &str, from_now: i64) -> String {
    let at = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("{from_now} seconds"),
            "+%Y-%m-%dT%H:%M:%SZ",
        ])
        .output()
        .unwrap();
    let at = String::from_utf8(at.stdout).unwrap();
    serde_json::json!({
        "startUrl": "https://corp.awsapps.com/start", "region": "us-east-1",
        "accessToken": token, "expiresAt": at.trim(), "clientId": "client-1",
        "clientSecret": "client-secret", "refreshToken": "refresh-1",
        "registrationExpiresAt": "2099-01-01T00:00:00Z"})
    .to_string()
}

/// Mounted an hour after the last `aws sso login`, the token has expired: it is refreshed with
/// the refresh token, the portal gives keys for the role, and the keys are renewed before they
/// expire, without refreshing the token again. Signed out elsewhere, the origin goes down
/// saying to log in; a new `aws sso login` brings it back without a restart. No token, refresh
/// token or key shows in the status.
#[test]
fn an_s3_profile_with_an_sso_role_refreshes_its_token_and_takes_a_new_login() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let library = noise_library(8, 20);
    put_tracks(&s3, &library, 3);
    let portal = SsoPortal::new(Portal {
        account_id: "111122223333".into(),
        role_name: "MusicReader".into(),
        keys: (s3.access_key().into(), s3.secret_key().into()),
        // A minute before they expire they are due again: renewed after 2 s.
        keys_last: 62,
        refresh: Some(("refresh-1".into(), "token-2".into())),
        ..Portal::default()
    });
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".aws/sso/cache")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile work]\nsso_session = corp\nsso_account_id = 111122223333\n\
             sso_role_name = MusicReader\nregion = us-east-1\ns3 =\n  endpoint_url = {}\n  \
             addressing_style = path\n\n\
             [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
             sso_region = us-east-1\nsso_registration_scopes = sso:account:access\n",
            s3.endpoint()
        ),
    )
    .unwrap();
    let token_path = home.join(TOKEN_FILE);
    std::fs::write(&token_path, token_file("token-1", -3600)).unwrap();
    let config = format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nprofile = \"work\"\ntimeout_seconds = 2\n"
    );
    let url = portal.url();
    let env = [
        ("HOME", home.as_path()),
        ("AWS_ENDPOINT_URL_SSO", Path::new(&url)),
        ("AWS_ENDPOINT_URL_SSO_OIDC", Path::new(&url)),
    ];
    let mount = mount_with_env(tmp.path(), &config, &env);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 3, "{status}");
    let original = |i: usize| std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
    assert!(std::fs::read(mount.path(&noise_track_path(1))).unwrap() == original(1));
    let asked = portal.requests();
    assert_eq!(
        asked[..2],
        [
            "POST /token refresh-1",
            "GET /federation/credentials token-2"
        ],
        "the expired token refreshed first: {asked:?}"
    );

    std::thread::sleep(Duration::from_secs(3));
    assert!(std::fs::read(mount.path(&noise_track_path(2))).unwrap() == original(2));
    let asked = portal.requests();
    let renewals = asked.iter().filter(|r| r.starts_with("GET")).count();
    assert!(renewals >= 2, "the keys were not renewed: {asked:?}");
    assert_eq!(asked.iter().filter(|r| r.starts_with("POST")).count(), 1);
    assert!(asked
        .iter()
        .all(|r| r.ends_with("refresh-1") || r.ends_with("token-2")));

    // Signed out elsewhere: the portal takes neither the token nor the refresh token.
    {
        let mut state = portal.state.lock().unwrap();
        state.valid_tokens.clear();
        state.refresh = None;
    }
    let (error, status) = wait_down(&mount, "s3://");
    assert!(
        error.contains("SSO profile \"work\"") && error.contains("aws sso login --profile work"),
        "{status}"
    );
    let shown = status.to_string();
    for secret in ["token-", "refresh-1", "client-secret", s3.secret_key()] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }

    // `aws sso login` again: a new token in the file, which the portal takes.
    portal
        .state
        .lock()
        .unwrap()
        .valid_tokens
        .push("token-3".into());
    std::fs::write(&token_path, token_file("token-3", 8 * 3600)).unwrap();
    wait_for("the origin is up again", Duration::from_secs(30), || {
        origin(&mount.status(false), "s3://")["up"] == true
    });
    assert!(std::fs::read(mount.path(&noise_track_path(3))).unwrap() == original(3));
    let asked = portal.requests();
    assert_eq!(
        asked.last().map(String::as_str),
        Some("GET /federation/credentials token-3")
    );
}
