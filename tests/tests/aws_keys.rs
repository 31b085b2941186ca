//! S3 buckets read with temporary keys the AWS tools get from elsewhere, on a real mount
//! against a real S3 server checking signatures (s3s-fs): an AWS profile's IAM Identity Center
//! (SSO) role, with the token `aws sso login` left in `~/.aws/sso/cache`; a Kubernetes pod's
//! web identity exchanged at STS; a container's credentials endpoint. AWS's services cannot run
//! here; a stand-in on 127.0.0.1 (`musicfs_tests::aws_standin`) answers as they do, reached
//! through the variables the AWS tools read (`AWS_ENDPOINT_URL_SSO`, `AWS_ENDPOINT_URL_STS`,
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`, ...).

use std::path::Path;
use std::time::Duration;

use musicfs_tests::aws_standin::{AwsStandIn, Portal};
use musicfs_tests::corpus::{noise_library, noise_track_path};
use musicfs_tests::mount::Mount;
use musicfs_tests::remote::{mount_with_env, origin, put_tracks, wait_down, wait_for, BUCKET};
use musicfs_tests::s3server::S3Server;

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
    let portal = AwsStandIn::new(Portal {
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

/// A bucket mounted with keys from `standin` (the env names how), three tracks in it; returns
/// the mount and a function reading track `i` back whole.
fn mount_with_keys_from(
    tmp: &Path,
    s3: &S3Server,
    env: &[(&str, &Path)],
) -> (Mount, impl Fn(&Mount, usize) -> bool) {
    let library = noise_library(8, 20);
    put_tracks(s3, &library, 3);
    let home = tmp.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let config = format!(
        "[[origins]]\nurl = \"s3://{BUCKET}/lib\"\nendpoint = \"{}\"\npath_style = true\n\
         timeout_seconds = 2\n",
        s3.endpoint()
    );
    let mut env = env.to_vec();
    env.push(("HOME", &home));
    let mount = mount_with_env(tmp, &config, &env);
    let status = mount.status(true);
    assert_eq!(status["catalog"]["tracks"], 3, "{status}");
    let reads = move |mount: &Mount, i: usize| {
        let original = std::fs::read(library.join(format!("noise-{i:02}.flac"))).unwrap();
        std::fs::read(mount.path(&noise_track_path(i))).unwrap() == original
    };
    (mount, reads)
}

/// A pod's service account token, exchanged at STS for the role's keys; the orchestrator
/// replaces the token file (and the old token stops working): the next exchange reads the new
/// one. No token or key shows in the status.
#[test]
fn a_pods_web_identity_is_exchanged_for_keys_with_the_token_of_the_day() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let role = "arn:aws:iam::111122223333:role/music-reader";
    let standin = AwsStandIn::new(Portal {
        role_arn: role.into(),
        keys: (s3.access_key().into(), s3.secret_key().into()),
        keys_last: 62,
        valid_tokens: vec!["jwt-1".into()],
        ..Portal::default()
    });
    let secrets = tmp.path().join("serviceaccount");
    std::fs::create_dir_all(&secrets).unwrap();
    let token = secrets.join("token");
    std::fs::write(&token, "jwt-1\n").unwrap();
    let url = standin.url();
    let env = [
        ("AWS_ROLE_ARN", Path::new(role)),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_path()),
        ("AWS_ENDPOINT_URL_STS", Path::new(&url)),
    ];
    let (mount, reads) = mount_with_keys_from(tmp.path(), &s3, &env);
    assert!(reads(&mount, 1));
    assert_eq!(standin.requests()[0], "POST / jwt-1");

    // The token replaced by a new file, the old one revoked.
    let next = secrets.join("token.new");
    std::fs::write(&next, "jwt-2\n").unwrap();
    std::fs::rename(&next, &token).unwrap();
    standin.state.lock().unwrap().valid_tokens = vec!["jwt-2".into()];
    std::thread::sleep(Duration::from_secs(3));
    assert!(reads(&mount, 2));
    let asked = standin.requests();
    assert_eq!(
        asked.last().map(String::as_str),
        Some("POST / jwt-2"),
        "{asked:?}"
    );
    let shown = mount.status(false).to_string();
    assert!(
        !shown.contains("jwt-") && !shown.contains(s3.secret_key()),
        "{shown}"
    );

    // The token file gone: the origin is down, saying which file (not "no such track").
    std::fs::remove_file(&token).unwrap();
    let (error, status) = wait_down(&mount, "s3://");
    assert!(
        error.contains("web identity token") && error.contains(&*token.to_string_lossy()),
        "{status}"
    );
}

/// A container's credentials endpoint, with the authorization token from its file; an
/// endpoint that refuses takes the origin down saying so.
#[test]
fn a_containers_credentials_endpoint_gives_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let standin = AwsStandIn::new(Portal {
        keys: (s3.access_key().into(), s3.secret_key().into()),
        keys_last: 62,
        valid_tokens: vec!["auth-1".into()],
        ..Portal::default()
    });
    let token = tmp.path().join("authorization");
    std::fs::write(&token, "auth-1").unwrap();
    let url = format!("{}/creds", standin.url());
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", Path::new(&url)),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token.as_path()),
    ];
    let (mount, reads) = mount_with_keys_from(tmp.path(), &s3, &env);
    assert!(reads(&mount, 1));
    assert_eq!(standin.requests()[0], "GET /creds auth-1");

    standin.state.lock().unwrap().valid_tokens.clear();
    let (error, status) = wait_down(&mount, "s3://");
    assert!(
        error.contains("the container credentials endpoint") && error.contains("401"),
        "{status}"
    );
}

/// A profile that assumes a role with another profile's keys (`role_arn` and
/// `source_profile`): the request to STS is signed with the source's keys, and the role's keys
/// read the bucket.
#[test]
fn a_profile_assumes_its_role_with_its_source_profiles_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3Server::new();
    let role = "arn:aws:iam::222233334444:role/music";
    let standin = AwsStandIn::new(Portal {
        role_arn: role.into(),
        keys: (s3.access_key().into(), s3.secret_key().into()),
        keys_last: 3600,
        valid_tokens: vec!["AKIABASE".into()],
        ..Portal::default()
    });
    let aws = tmp.path().join("aws");
    std::fs::create_dir_all(&aws).unwrap();
    let config = aws.join("config");
    std::fs::write(
        &config,
        format!(
            "[profile base]\naws_access_key_id = AKIABASE\naws_secret_access_key = base-secret\n\
             [profile music]\nrole_arn = {role}\nsource_profile = base\n"
        ),
    )
    .unwrap();
    let url = standin.url();
    let env = [
        ("AWS_CONFIG_FILE", config.as_path()),
        ("AWS_PROFILE", Path::new("music")),
        ("AWS_ENDPOINT_URL_STS", Path::new(&url)),
    ];
    let (mount, reads) = mount_with_keys_from(tmp.path(), &s3, &env);
    assert!(reads(&mount, 1));
    assert_eq!(standin.requests()[0], "POST / AssumeRole AKIABASE");
    let shown = mount.status(false).to_string();
    assert!(
        !shown.contains("base-secret") && !shown.contains(s3.secret_key()),
        "{shown}"
    );
}
