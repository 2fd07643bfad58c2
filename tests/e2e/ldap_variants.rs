//! End-to-end against slapd: other membership models (memberUid, uniqueMember), email from a
//! prefix and suffix, and TLS (StartTLS and LDAPS with the test CA; an unknown CA is refused).

use crate::support;

use support::fake_bitwarden::FakeBitwarden;
use support::slapd::{self, BASE, ServerCert, Slapd, TlsOptions, person, user_dn};
use support::{Env, test_group_size};

fn directory() -> String {
    let mut l = String::new();
    l.push_str(&person("MikiP", Some("miki@example.com"), false));
    l.push_str(&person("pichockv", Some("pich@example.com"), false));
    l.push_str(&person("nomail", None, false));
    l.push_str(&format!(
        "dn: cn=DevOps,ou=Groups,{BASE}\nobjectClass: posixGroup\ncn: DevOps\ngidNumber: 1000\nmemberUid: mikip\nmemberUid: PICHOCKV\nmemberUid: unknown\n\n"
    ));
    l.push_str(&format!(
        "dn: cn=Red Team,ou=Groups,{BASE}\nobjectClass: groupOfUniqueNames\ncn: Red Team\nuniqueMember: {}\nuniqueMember: {}#'0101'B\n\n",
        user_dn("MikiP"),
        user_dn("nomail")
    ));
    l
}

#[test]
fn member_uid_unique_member_and_email_prefix_suffix() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);

    env.set("sync.group_object_class", "posixGroup");
    env.set("sync.member_attribute", "memberUid");
    let j = env.json(&["test"]);
    assert_eq!(
        test_group_size(&j, "DevOps"),
        2,
        "uids match case-insensitively"
    );

    env.set("sync.group_object_class", "groupOfUniqueNames");
    env.set("sync.member_attribute", "uniqueMember");
    env.set("sync.use_email_prefix_suffix", "true");
    env.set("sync.email_suffix", "@corp.example.com");
    let j = env.json(&["test"]);
    assert_eq!(
        test_group_size(&j, "Red Team"),
        2,
        "DN members, with and without #uid"
    );
    let emails: Vec<&str> = j["enabledUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(
        emails.contains(&"nomail@corp.example.com"),
        "prefix+suffix: {emails:?}"
    );
    env.ok(&["sync"]);
    assert_eq!(
        server.org().group_emails("Red Team").len(),
        2,
        "both members are in the synced group"
    );
}

#[test]
fn starttls_and_ldaps_with_the_ca_and_a_clear_error_without_it() {
    let slapd = Slapd::start(&directory());
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let ca = slapd::certs().ca.display().to_string();

    env.set("ldap.encryption", "starttls");
    let r = env.expect(&["test"], 1);
    assert!(
        r.stderr.contains("unknown issuer") && r.stderr.contains("ldap.ca_file"),
        "{}",
        r.stderr
    );

    env.set("ldap.ca_file", &ca);
    env.ok(&["test"]);

    env.set("ldap.encryption", "ldaps");
    env.set("ldap.port", &slapd.ldaps_port.to_string());
    let j = env.json(&["test"]);
    assert_eq!(j["enabledUsers"].as_array().unwrap().len(), 2);

    // skip verification works without the CA, and warns
    env.ok(&["config", "unset", "ldap.ca_file"]);
    env.set("ldap.skip_cert_verification", "true");
    let r = env.ok(&["test"]);
    assert!(r.stderr.contains("NOT verified"), "{}", r.stderr);
}

#[test]
fn certificate_failures_name_the_check_that_failed() {
    let server = FakeBitwarden::start();
    let ca = slapd::certs().ca.display().to_string();
    for (cert, expected) in [
        (ServerCert::WrongName, "does not match the host name"),
        (ServerCert::Expired, "has expired"),
    ] {
        let slapd = Slapd::start_with(
            &directory(),
            TlsOptions {
                cert,
                require_client_cert: false,
            },
        );
        let env = Env::new();
        env.configure(&slapd, &server);
        env.set("ldap.ca_file", &ca);
        env.set("ldap.encryption", "ldaps");
        env.set("ldap.port", &slapd.ldaps_port.to_string());
        let r = env.expect(&["test"], 1);
        assert!(r.stderr.contains(expected), "{}", r.stderr);
        // the same certificate accepted when verification is off (and it warns)
        env.set("ldap.skip_cert_verification", "true");
        let r = env.ok(&["test"]);
        assert!(r.stderr.contains("NOT verified"), "{}", r.stderr);
    }
}

#[test]
fn client_certificate_for_mutual_tls() {
    let slapd = Slapd::start_with(
        &directory(),
        TlsOptions {
            cert: ServerCert::Good,
            require_client_cert: true,
        },
    );
    let server = FakeBitwarden::start();
    let env = Env::new();
    env.configure(&slapd, &server);
    let c = slapd::certs();
    env.set("ldap.ca_file", &c.ca.display().to_string());
    for (encryption, port) in [("starttls", slapd.port), ("ldaps", slapd.ldaps_port)] {
        env.set("ldap.encryption", encryption);
        env.set("ldap.port", &port.to_string());
        env.ok(&["config", "unset", "ldap.client_cert_file"]);
        env.ok(&["config", "unset", "ldap.client_key_file"]);
        let r = env.expect(&["test"], 1);
        assert!(
            r.stderr.contains("127.0.0.1") || r.stderr.contains("LDAP"),
            "the server refuses a client without a certificate: {}",
            r.stderr
        );
        env.set(
            "ldap.client_cert_file",
            &c.client_cert.display().to_string(),
        );
        // a key that does not belong to the certificate
        env.set("ldap.client_key_file", &c.key.display().to_string());
        let r = env.expect(&["test"], 2);
        assert!(r.stderr.contains("does not match"), "{}", r.stderr);
        env.set("ldap.client_key_file", &c.client_key.display().to_string());
        let j = env.json(&["test"]);
        assert_eq!(
            j["enabledUsers"].as_array().unwrap().len(),
            2,
            "{encryption}"
        );
    }
    // only one of the pair is a config error naming the missing key
    env.ok(&["config", "unset", "ldap.client_key_file"]);
    let r = env.expect(&["test"], 2);
    assert!(r.stderr.contains("ldap.client_key_file"), "{}", r.stderr);
}
