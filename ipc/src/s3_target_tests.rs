use super::*;

/// A home with `~/.aws/credentials` and `~/.aws/config` as `aws configure` writes them.
fn home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default-secret\n\n\
         [b2]\naws_access_key_id=KEYB2\naws_secret_access_key=b2-secret\n\
         aws_session_token = b2-token\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-central-1\n\n\
         [profile b2]\nregion = us-west-004\n\
         s3 =\n  addressing_style = path\n  endpoint_url = https://s3.us-west-004.example\n\
         output = json\n\n\
         [profile minio]\nendpoint_url = http://127.0.0.1:9000\n\
         aws_access_key_id = MINIO\naws_secret_access_key = minio-secret\n\
         ca_bundle = /home/me/minio-ca.pem\n\n\
         [profile sso]\nregion = eu-west-1\n\
         credential_process = aws configure export-credentials --profile work --format process\n",
    )
    .unwrap();
    home
}

fn resolve(home: &Path, env: &[(&str, &str)], edit: impl Fn(&mut OriginConfig)) -> S3Target {
    let mut config = OriginConfig::from_url("s3://music/lib");
    edit(&mut config);
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    S3Target::resolve(&config, Some(home), &|name| env.get(name).cloned()).unwrap()
}

fn key_of(target: &S3Target) -> (&str, &str, Option<&str>) {
    let keys = target.keys.as_ref().expect("keys");
    (
        keys.access_key_id.as_str(),
        keys.secret_access_key.expose(),
        keys.session_token.as_ref().map(Secret::expose),
    )
}

#[test]
fn a_profile_gives_keys_region_endpoint_and_addressing() {
    let home = home();
    let b2 = resolve(home.path(), &[], |c| c.profile = Some("b2".into()));
    assert_eq!(key_of(&b2), ("KEYB2", "b2-secret", Some("b2-token")));
    assert_eq!(b2.region, "us-west-004");
    assert_eq!(b2.endpoint, "https://s3.us-west-004.example");
    assert!(b2.path_style);

    // AWS_PROFILE picks it when the config names none; keys may live in the config file.
    let minio = resolve(home.path(), &[("AWS_PROFILE", "minio")], |_| {});
    assert_eq!(key_of(&minio), ("MINIO", "minio-secret", None));
    assert_eq!(minio.endpoint, "http://127.0.0.1:9000");
    assert_eq!(minio.region, "us-east-1");
    assert!(!minio.path_style);

    let default = resolve(home.path(), &[], |_| {});
    assert_eq!(key_of(&default), ("AKIADEFAULT", "default-secret", None));
    assert_eq!(default.region, "eu-central-1");
    assert_eq!(default.endpoint, "https://s3.eu-central-1.amazonaws.com");
    assert_eq!(
        default.files,
        [
            home.path().join(".aws/credentials"),
            home.path().join(".aws/config")
        ]
    );
}

#[test]
fn the_config_comes_first_then_the_environment_then_the_profile() {
    let home = home();
    let env = [
        ("AWS_ACCESS_KEY_ID", "ENVKEY"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ("AWS_SESSION_TOKEN", "env-token"),
        ("AWS_REGION", "ap-south-1"),
        ("AWS_ENDPOINT_URL", "http://env.example"),
    ];
    let from_env = resolve(home.path(), &env, |c| c.profile = Some("b2".into()));
    assert_eq!(
        key_of(&from_env),
        ("ENVKEY", "env-secret", Some("env-token"))
    );
    assert_eq!(from_env.region, "ap-south-1");
    assert_eq!(from_env.endpoint, "http://env.example");

    let from_config = resolve(home.path(), &env, |c| {
        c.access_key_id = Some("CFG".into());
        c.secret_access_key = Some(Secret::new("cfg-secret"));
        c.region = Some("eu-west-1".into());
        c.endpoint = Some("http://cfg.example".into());
    });
    assert_eq!(key_of(&from_config), ("CFG", "cfg-secret", None));
    assert_eq!(from_config.region, "eu-west-1");
    assert_eq!(from_config.endpoint, "http://cfg.example");

    // Other files, named by the environment; none there: no keys, and the error says where
    // they were looked for.
    let other = home.path().join("elsewhere");
    let nowhere = resolve(
        home.path(),
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", other.to_str().unwrap()),
            ("AWS_CONFIG_FILE", other.to_str().unwrap()),
        ],
        |_| {},
    );
    assert!(nowhere.keys.is_none());
    assert!(nowhere.credential_process.is_none());
    let why = nowhere.keys_missing();
    assert!(
        why.contains("profile \"default\"") && why.contains("elsewhere"),
        "{why}"
    );
}

#[test]
fn a_credential_process_is_used_where_no_keys_are_given() {
    let home = home();
    let sso = resolve(home.path(), &[], |c| c.profile = Some("sso".into()));
    assert!(sso.keys.is_none());
    assert_eq!(
        sso.credential_process.as_deref(),
        Some("aws configure export-credentials --profile work --format process")
    );
    assert_eq!(sso.region, "eu-west-1");
    // Keys from the environment come first, as with the AWS tools.
    let env = [
        ("AWS_ACCESS_KEY_ID", "ENV"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ];
    let keyed = resolve(home.path(), &env, |c| c.profile = Some("sso".into()));
    assert_eq!(key_of(&keyed), ("ENV", "env-secret", None));
    assert!(keyed.credential_process.is_none());
}

#[test]
fn sections_are_matched_whole_and_the_first_value_wins() {
    let text = "[profile b2x]\nregion = wrong\n[ profile   b2 ]\nregion = right\n\
                region = second\n[other]\nregion = other\n";
    let profile = parse_section(text, "profile b2");
    assert_eq!(profile.get("region").map(String::as_str), Some("right"));
    assert_eq!(profile.len(), 1);
}

/// A MinIO or Garage at home with its own CA: the certificates to trust come from `ca_file`,
/// then `AWS_CA_BUNDLE`, then the profile's `ca_bundle`, as the AWS tools take them.
#[test]
fn the_ca_bundle_comes_from_the_config_the_environment_or_the_profile() {
    let home = home();
    let minio = resolve(home.path(), &[("AWS_PROFILE", "minio")], |_| {});
    assert_eq!(minio.ca_file, Some("/home/me/minio-ca.pem".into()));
    let env = [
        ("AWS_PROFILE", "minio"),
        ("AWS_CA_BUNDLE", "/etc/env-ca.pem"),
    ];
    assert_eq!(
        resolve(home.path(), &env, |_| {}).ca_file,
        Some("/etc/env-ca.pem".into())
    );
    let given = resolve(home.path(), &env, |c| c.ca_file = Some("/x/ca.pem".into()));
    assert_eq!(given.ca_file, Some("/x/ca.pem".into()));
    assert_eq!(resolve(home.path(), &[], |_| {}).ca_file, None);
}

#[test]
fn an_sso_profile_names_its_role_portal_and_token_cache() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile work]\nsso_session = corp\nsso_account_id = 111122223333\n\
         sso_role_name = MusicReader\nregion = eu-west-1\n\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n\
         sso_region = eu-central-1\nsso_registration_scopes = sso:account:access\n\n\
         [profile legacy]\nsso_start_url = https://old.awsapps.com/start\nsso_region = us-east-2\n\
         sso_account_id = 444455556666\nsso_role_name = Old\n\n\
         [profile half]\nsso_session = corp\nsso_account_id = 111122223333\n\n\
         [profile lost]\nsso_session = nowhere\nsso_account_id = 1\nsso_role_name = R\n",
    )
    .unwrap();
    let work = resolve(home.path(), &[], |c| c.profile = Some("work".into()));
    let sso = work.sso.as_ref().expect("an SSO role");
    assert!(work.keys.is_none() && work.credential_process.is_none());
    assert_eq!(
        (
            sso.account_id.as_str(),
            sso.role_name.as_str(),
            sso.region.as_str()
        ),
        ("111122223333", "MusicReader", "eu-central-1")
    );
    assert_eq!(sso.start_url, "https://corp.awsapps.com/start");
    assert_eq!(sso.cache_key(), "corp");
    assert_eq!(sso.portal, "https://portal.sso.eu-central-1.amazonaws.com");
    assert_eq!(sso.oidc, "https://oidc.eu-central-1.amazonaws.com");
    assert_eq!(sso.cache_dir, home.path().join(".aws/sso/cache"));
    // The sandbox admits the cache, or where aws sso login will make it.
    assert!(
        work.files.contains(&home.path().join(".aws")),
        "{:?}",
        work.files
    );
    std::fs::create_dir_all(&sso.cache_dir).unwrap();
    let work = resolve(home.path(), &[], |c| c.profile = Some("work".into()));
    assert!(work.files.contains(&sso.cache_dir), "{:?}", work.files);
    assert_eq!(
        work.region, "eu-west-1",
        "the bucket's region is the profile's"
    );

    let legacy = resolve(
        home.path(),
        &[("AWS_ENDPOINT_URL_SSO", "http://127.0.0.1:9/")],
        |c| c.profile = Some("legacy".into()),
    );
    let sso = legacy.sso.expect("an SSO role");
    assert_eq!(sso.cache_key(), "https://old.awsapps.com/start");
    assert_eq!((sso.session, sso.region.as_str()), (None, "us-east-2"));
    assert_eq!(sso.portal, "http://127.0.0.1:9");

    // Keys given otherwise come first.
    let given = resolve(
        home.path(),
        &[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "s")],
        |c| c.profile = Some("work".into()),
    );
    assert!(given.sso.is_none());

    let err = |profile: &str| {
        let mut config = OriginConfig::from_url("s3://music/lib");
        config.profile = Some(profile.into());
        S3Target::resolve(&config, Some(home.path()), &|_| None).unwrap_err()
    };
    assert!(err("half").contains("sso_role_name"), "{}", err("half"));
    assert!(
        err("lost").contains("no [sso-session nowhere] section"),
        "{}",
        err("lost")
    );
}
