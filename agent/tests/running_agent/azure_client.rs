//! A real Azure IMDS client that nobody on this project wrote: the Azure Linux agent's
//! `azurelinuxagent.common.protocol.imds` (Debian package `waagent`), unmodified but for the
//! address it calls, fetches `/metadata/instance/compute` and validates health against the agent.
//! `scripts/install-test-deps` installs it under `.cache/waagent`.

use std::path::PathBuf;
use std::process::Command;
use testkit::Agent;

fn waagent_pythonpath() -> PathBuf {
    let path = match std::env::var_os("WAAGENT_PYTHONPATH") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.cache/waagent/usr/lib/python3/dist-packages"
        )),
    };
    assert!(
        path.join("azurelinuxagent/common/protocol/imds.py")
            .exists(),
        "the Azure client (Debian package waagent) is not installed at {}: run scripts/install-test-deps",
        path.display()
    );
    path
}

#[tokio::test]
async fn the_azure_linux_agent_imds_client_accepts_the_agent() {
    let pythonpath = waagent_pythonpath();
    // Azure's default rate limit on: the client must pass under it.
    let agent = Agent::builder().start();
    let output = Command::new("/usr/bin/python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/azure_client/waagent_imds.py"
        ))
        .arg(agent.api.port().to_string())
        .env("PYTHONPATH", pythonpath)
        .output()
        .expect("/usr/bin/python3 (Debian's python3) is needed: run scripts/install-test-deps");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let expected = crate::example::example_document();
    let compute = &expected["compute"];
    assert_eq!(result["healthy"], true, "{result}");
    assert_eq!(result["error"], "");
    for field in [
        "location",
        "name",
        "offer",
        "osType",
        "publisher",
        "sku",
        "subscriptionId",
        "vmId",
        "vmSize",
        "zone",
    ] {
        assert_eq!(result[field], compute[field], "{field}");
    }
    // Canonical's Ubuntu 22.04 is an endorsed image: the client parsed the fields it matches on.
    assert_eq!(result["image_origin"], 3);

    // It really talked to this agent: both of its calls are in the local log.
    let api_version = result["api_version"].as_str().unwrap().to_owned();
    let records = agent.wait_for_log("the client's two requests", |r| {
        r.iter().filter(|r| r.target == "imds::request").count() == 2
    });
    let mut paths: Vec<(String, u16, String)> = records
        .iter()
        .filter(|r| r.target == "imds::request")
        .map(|r| {
            (
                r.path.clone().unwrap(),
                r.status.unwrap(),
                r.api_version.clone().unwrap(),
            )
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            ("/metadata/instance".to_owned(), 200, api_version.clone()),
            ("/metadata/instance/compute".to_owned(), 200, api_version),
        ]
    );
}

#[tokio::test]
async fn azure_identitys_managed_identity_credential_gives_up_at_once() {
    let python = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../.cache/azure-identity/bin/python"
    ));
    assert!(
        python.exists(),
        "azure-identity (PyPI) is not installed at {}: run scripts/install-test-deps",
        python.display()
    );
    let agent = Agent::builder().start();
    let output = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/azure_client/identity_credential.py"
        ))
        .arg(agent.api.port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(outcome["raised"], "CredentialUnavailableError", "{outcome}");
    assert!(
        outcome["message"]
            .as_str()
            .unwrap()
            .contains("(invalid_request) Identity not found"),
        "{outcome}"
    );
    // A 404 made it retry for about 24 s before giving up.
    let seconds = outcome["seconds"].as_f64().unwrap();
    assert!(seconds < 2.0, "gave up after {seconds} s");
    let records = agent.wait_for_log("the token request", |r| {
        r.iter().any(|r| r.target == "imds::request")
    });
    let request = records
        .iter()
        .find(|r| r.target == "imds::request")
        .unwrap();
    assert_eq!(
        request.path.as_deref(),
        Some("/metadata/identity/oauth2/token")
    );
    assert_eq!(request.status, Some(400));
}
