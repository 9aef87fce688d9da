//! What real Azure clients meet beyond the basic contract: fields by api-version, HEAD, the
//! endpoints this agent does not serve answered the way Azure answers a VM without them, and the
//! change notification (ETag, If-None-Match, wait-for-change) this agent adds.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::{Agent, http::client};

const JSON: &str = "application/json; charset=utf-8";

async fn get_json(agent: &Agent, path: &str) -> (u16, Value) {
    let response = agent.get(path).await;
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], JSON, "{path}: {status}");
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn each_api_version_gets_the_fields_azure_had_at_that_version() {
    let agent = Agent::start_unlimited();
    // WALinuxAgent's version: none of the later fields it would call "Unknown property".
    let (status, old) = get_json(&agent, "/metadata/instance/compute?api-version=2018-02-01").await;
    assert_eq!(status, 200);
    for later in [
        "tagsList",
        "osProfile",
        "userData",
        "storageProfile",
        "securityProfile",
        "azEnvironment",
        "resourceId",
        "plan",
        "publicKeys",
        "hostGroup",
        "physicalZone",
    ] {
        assert!(old.get(later).is_none(), "{later} at 2018-02-01: {old}");
    }
    for present in [
        "vmId",
        "location",
        "zone",
        "subscriptionId",
        "vmScaleSetName",
    ] {
        assert!(
            old.get(present).is_some(),
            "{present} missing at 2018-02-01"
        );
    }
    let (_, mid) = get_json(&agent, "/metadata/instance/compute?api-version=2021-02-01").await;
    assert!(mid.get("userData").is_some() && mid.get("osProfile").is_some());
    assert!(mid.get("hostGroup").is_none() && mid.get("additionalCapabilities").is_none());
    assert_eq!(
        mid["securityProfile"],
        json!({"secureBootEnabled": "true", "virtualTpmEnabled": "true"})
    );
    let full: Value = serde_json::from_str(agent::metadata::EXAMPLE_DOCUMENT).unwrap();
    let (_, newest) = get_json(&agent, "/metadata/instance/compute?api-version=2025-04-07").await;
    assert_eq!(newest, full["compute"]);
    // A field that does not exist at the version is not found, as a path too.
    let (status, body) = get_json(
        &agent,
        "/metadata/instance/compute/osProfile?api-version=2019-06-01",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // The text listing follows the same table.
    let listing = agent
        .get("/metadata/instance/compute/securityProfile?api-version=2021-02-01&format=text")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(listing, "secureBootEnabled\nvirtualTpmEnabled");
}

#[tokio::test]
async fn cloud_inits_version_with_extended_is_answered() {
    let agent = Agent::start_unlimited();
    let (status, body) = get_json(
        &agent,
        "/metadata/instance?api-version=2021-08-01&extended=true",
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.get("extended").is_some(), "{body}");
    let (status, _) = get_json(&agent, "/metadata/instance?api-version=2024-03-15").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn head_is_405_with_allow_get() {
    let agent = Agent::start_unlimited();
    for path in [
        "/metadata/instance?api-version=2021-02-01",
        "/metadata/instance/compute?api-version=2021-02-01",
        "/metadata/versions",
    ] {
        let response = client()
            .head(agent.url(path))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{path}");
        assert_eq!(response.headers()["allow"], "GET");
        assert_eq!(response.headers()["content-type"], JSON);
    }
}

#[tokio::test]
async fn endpoints_this_agent_does_not_serve_answer_like_a_vm_without_them() {
    let agent = Agent::start_unlimited();
    let identity = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F";
    assert_eq!(
        get_json(&agent, identity).await,
        (
            400,
            json!({"error": "invalid_request", "error_description": "Identity not found"})
        )
    );
    assert_eq!(
        get_json(&agent, "/metadata/identity/info?api-version=2018-02-01")
            .await
            .0,
        400
    );
    let (status, body) = get_json(
        &agent,
        "/metadata/loadbalancer?api-version=2020-10-01&format=json",
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("load balancer"),
        "{body}"
    );
    let (status, body) =
        get_json(&agent, "/metadata/attested/document?api-version=2020-09-01").await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("attested"),
        "{body}"
    );
    assert_eq!(
        get_json(&agent, "/metadata/scheduledevents?api-version=2020-07-01").await,
        (
            400,
            json!({"error": "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds", "newest-versions": agent::api_version::newest(3)})
        )
    );
    assert_eq!(
        get_json(&agent, "/metadata/scheduledevents?api-version=2020-07-15").await,
        (200, json!({"DocumentIncarnation": 0, "Events": []}))
    );
    // The Metadata header is still required first, as everywhere under /metadata.
    let bare = client().get(agent.url(identity)).send().await.unwrap();
    assert_eq!(bare.status(), 400);
    assert_eq!(
        bare.json::<Value>().await.unwrap()["error"],
        "Bad request. Required metadata header not specified"
    );
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let agent = Agent::start_unlimited();
    let first = agent.get("/metadata/instance?api-version=2021-02-01").await;
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 18,
        "{etag}"
    );
    // The document's version: the same for any path, format or api-version of it.
    let other = agent
        .get("/metadata/instance/compute/vmId?api-version=2025-04-07&format=text")
        .await;
    assert_eq!(other.headers()["etag"].to_str().unwrap(), etag);
    for if_none_match in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let response = if_none_match_get(
            &agent,
            "/metadata/instance?api-version=2021-02-01",
            &if_none_match,
        )
        .await;
        assert_eq!(response.status(), 304, "{if_none_match}");
        assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);
        assert!(response.headers().contains_key("x-ms-request-id"));
        assert_eq!(response.bytes().await.unwrap().len(), 0);
    }
    // A path the document does not have is still a 404, whatever the tag.
    let missing = if_none_match_get(
        &agent,
        "/metadata/instance/compute/nope?api-version=2021-02-01",
        &etag,
    )
    .await;
    assert_eq!(missing.status(), 404);
    let stale = if_none_match_get(
        &agent,
        "/metadata/instance?api-version=2021-02-01",
        "\"0000000000000000\"",
    )
    .await;
    assert_eq!(stale.status(), 200);
}

/// GET with the Metadata header and `If-None-Match: <tag>`.
async fn if_none_match_get(agent: &Agent, path: &str, tag: &str) -> reqwest::Response {
    client()
        .get(agent.url(path))
        .header("Metadata", "true")
        .header("If-None-Match", tag)
        .send()
        .await
        .unwrap()
}

fn document(vm_id: &str) -> String {
    json!({"compute": {"vmId": vm_id}, "network": {"interface": []}}).to_string()
}

/// `wait-for-change` of `compute/vmId`, from `last_etag`: (status, etag, body, seconds held).
async fn wait_for_change(agent: &Agent, extra: &str) -> (u16, String, String, f64) {
    let started = Instant::now();
    let response = agent
        .get(&format!(
            "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text&wait-for-change=true{extra}"
        ))
        .await;
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.text().await.unwrap();
    (status, etag, body, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn wait_for_change_holds_until_the_document_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("instance.json");
    std::fs::write(&file, document("first")).unwrap();
    // Rate limit on, 2/s: held requests must not use it up while they wait.
    let agent = Agent::builder()
        .args(["--rate-limit", "2", "--metadata"])
        .arg(file.to_str().unwrap())
        .start();
    let etag = agent
        .get("/metadata/instance?api-version=2021-02-01")
        .await
        .headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    // Nothing changes: answered at the timeout with the same version.
    let (status, same, body, held) =
        wait_for_change(&agent, &format!("&last-etag={etag}&timeout-sec=1")).await;
    assert_eq!(
        (status, same.as_str(), body.as_str()),
        (200, etag.as_str(), "first")
    );
    assert!((0.9..3.0).contains(&held), "held {held} s");

    // A caller behind: answered at once.
    let (status, _, body, held) =
        wait_for_change(&agent, "&last-etag=%22old%22&timeout-sec=30").await;
    assert_eq!((status, body.as_str()), (200, "first"));
    assert!(held < 1.0, "held {held} s");

    // Held until the file changes, then answered with the new version. First the caller's
    // bucket (2 a second) refills: time itself is the condition (a probe would spend a token).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let waiter = {
        let url = agent.url(&format!(
            "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text&wait-for-change=true&last-etag={etag}&timeout-sec=60"
        ));
        tokio::spawn(async move {
            let started = Instant::now();
            let response = client()
                .get(url)
                .header("Metadata", "true")
                .send()
                .await
                .unwrap();
            let etag = response.headers()["etag"].to_str().unwrap().to_owned();
            (response.text().await.unwrap(), etag, started.elapsed())
        })
    };
    testkit::stays_async(
        "the wait-for-change request held while nothing changes",
        Duration::from_millis(1500),
        || async { !waiter.is_finished() },
    )
    .await;
    // The bucket refilled while the request was held: two plain requests pass.
    for _ in 0..2 {
        assert_eq!(
            agent.get("/metadata/versions").await.status(),
            200,
            "a held request must not use the rate limit while it waits"
        );
    }
    assert!(!waiter.is_finished());
    std::fs::write(&file, document("second")).unwrap();
    let (body, new_etag, held) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, "second");
    assert_ne!(new_etag, etag);
    assert!(held > Duration::from_millis(1400), "{held:?}");
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("imds_held_requests"), 0.0);
}

#[tokio::test]
async fn held_requests_are_bounded_and_released_at_shutdown() {
    let mut agent = Agent::builder()
        .args([
            "--rate-limit",
            "0",
            "--max-held-requests",
            "2",
            "--max-wait",
            "1h",
        ])
        .start();
    let url = agent.url(
        "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text&wait-for-change=true",
    );
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let response = client()
                    .get(url)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    testkit::eventually_async("two requests held", Duration::from_secs(10), || async {
        agent.scrape().await.value("imds_held_requests") == 2.0
    })
    .await;
    let refused = client()
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.json::<Value>().await.unwrap(),
        json!({"error": "Too many requests: 2 wait-for-change requests are already held; retry later"})
    );
    // Shutdown answers them with the current document and the agent exits promptly.
    let started = Instant::now();
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for waiter in held {
        let (status, body) = waiter.await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, "02aab8a4-74ef-476e-8182-f6d2ba4166a6")
        );
    }
}
