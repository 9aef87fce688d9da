//! The metadata API contract, rule by rule, against the running agent over real HTTP.

use crate::example::example_document;
use serde_json::{Value, json};
use testkit::{API_VERSION, Agent, http::client, http::raw_request};

const JSON: &str = "application/json; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const API_VERSION_ERROR: &str = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds";

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], JSON, "status {status}");
    (status, response.json().await.unwrap())
}

async fn text_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], TEXT);
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn versions_lists_the_supported_api_versions_without_needing_one() {
    let agent = Agent::start_unlimited();
    let (status, body) = json_of(agent.get("/metadata/versions").await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "apiVersions": agent::api_version::SUPPORTED })
    );
    let versions = body["apiVersions"].as_array().unwrap();
    assert_eq!(versions.first().unwrap(), "2017-03-01");
    assert_eq!(versions.last().unwrap(), "2025-04-07");
}

#[tokio::test]
async fn the_metadata_header_is_required_and_compared_case_insensitively() {
    let agent = Agent::start_unlimited();
    let url = agent.url(&format!("/metadata/instance?api-version={API_VERSION}"));
    let expected = json!({ "error": "Bad request. Required metadata header not specified" });
    let missing = client().get(&url).send().await.unwrap();
    assert_eq!(json_of(missing).await, (400, expected.clone()));
    for wrong in ["false", "yes", "", "true-ish"] {
        let response = client()
            .get(&url)
            .header("Metadata", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(
            json_of(response).await,
            (400, expected.clone()),
            "Metadata: {wrong:?}"
        );
    }
    for right in ["true", "True", "TRUE"] {
        let response = client()
            .get(&url)
            .header("Metadata", right)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "Metadata: {right}");
    }
    let versions = client()
        .get(agent.url("/metadata/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(versions).await, (400, expected));
}

#[tokio::test]
async fn requests_through_a_proxy_are_refused() {
    let agent = Agent::start_unlimited();
    for path in [
        format!("/metadata/instance?api-version={API_VERSION}"),
        "/metadata/versions".into(),
        "/elsewhere".into(),
    ] {
        let response = client()
            .get(agent.url(&path))
            .header("Metadata", "true")
            .header("X-Forwarded-For", "10.1.2.3")
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 400, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("X-Forwarded-For"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn api_version_missing_unknown_or_malformed_is_refused_with_the_newest_versions() {
    let agent = Agent::start_unlimited();
    let expected = json!({
        "error": API_VERSION_ERROR,
        "newest-versions": ["2025-04-07", "2024-07-17", "2024-03-15"],
    });
    for query in [
        "",
        "?api-version=",
        "?api-version=2016-01-01",
        "?api-version=2021-2-1",
        "?api-version=latest",
        "?format=json",
    ] {
        let response = agent
            .get(&format!("/metadata/instance/compute{query}"))
            .await;
        assert_eq!(
            json_of(response).await,
            (400, expected.clone()),
            "{query:?}"
        );
    }
}

#[tokio::test]
async fn every_supported_api_version_is_accepted() {
    let agent = Agent::start_unlimited();
    for version in agent::api_version::SUPPORTED {
        let response = agent
            .get(&format!(
                "/metadata/instance/compute/vmId?api-version={version}&format=text"
            ))
            .await;
        assert_eq!(
            text_of(response).await,
            (200, "02aab8a4-74ef-476e-8182-f6d2ba4166a6".into()),
            "{version}"
        );
    }
}

#[tokio::test]
async fn duplicated_parameters_and_unknown_formats_are_refused() {
    let agent = Agent::start_unlimited();
    let dup = agent
        .get(&format!(
            "/metadata/instance?api-version={API_VERSION}&api-version={API_VERSION}"
        ))
        .await;
    assert_eq!(
        json_of(dup).await,
        (
            400,
            json!({"error": "Bad request. Query parameter 'api-version' was given more than once"})
        )
    );
    let dup_format = agent.instance("", "&format=json&format=text").await;
    assert_eq!(
        json_of(dup_format).await,
        (
            400,
            json!({"error": "Bad request. Query parameter 'format' was given more than once"})
        )
    );
    let dup_versions = agent.get("/metadata/versions?x=1&x=2").await;
    assert_eq!(json_of(dup_versions).await.0, 400);
    let xml = agent.instance("", "&format=xml").await;
    assert_eq!(
        json_of(xml).await,
        (
            400,
            json!({"error": "Bad request. Unsupported format 'xml': use format=json or format=text"})
        )
    );
    let upper = agent.instance("", "&format=JSON").await;
    assert_eq!(json_of(upper).await.0, 400);
}

#[tokio::test]
async fn json_is_the_default_and_returns_the_subtree_at_the_path() {
    let agent = Agent::start_unlimited();
    let document = example_document();
    assert_eq!(
        json_of(agent.instance("", "").await).await,
        (200, document.clone())
    );
    assert_eq!(
        json_of(agent.instance("", "&format=json").await).await,
        (200, document.clone())
    );
    assert_eq!(
        json_of(agent.instance("/compute", "").await).await,
        (200, document["compute"].clone())
    );
    assert_eq!(
        json_of(agent.instance("/compute/", "").await).await,
        (200, document["compute"].clone())
    );
    assert_eq!(
        json_of(agent.instance("/network/interface/0/ipv4", "").await).await,
        (200, document["network"]["interface"][0]["ipv4"].clone())
    );
    assert_eq!(
        json_of(agent.instance("/compute/tagsList", "").await).await,
        (200, document["compute"]["tagsList"].clone())
    );
    // Document order is kept in JSON too.
    let body = agent.instance("", "").await.text().await.unwrap();
    assert!(
        body.starts_with(
            r#"{"compute":{"azEnvironment":"AzurePublicCloud","evictionPolicy":"","isHostCompatibilityLayerVm""#
        ),
        "{body:.80}"
    );
}

#[tokio::test]
async fn a_leaf_needs_format_text_and_is_returned_bare() {
    let agent = Agent::start_unlimited();
    let leaf_error = json!({"error": "Bad request. The requested path is a leaf value: use format=text to read it"});
    assert_eq!(
        json_of(agent.instance("/compute/vmId", "").await).await,
        (400, leaf_error.clone())
    );
    assert_eq!(
        json_of(agent.instance("/compute/vmId", "&format=json").await).await,
        (400, leaf_error)
    );
    let ip = agent
        .instance(
            "/network/interface/0/ipv4/ipAddress/0/privateIpAddress",
            "&format=text",
        )
        .await;
    assert_eq!(text_of(ip).await, (200, "10.0.0.4".into()));
    assert_eq!(
        text_of(agent.instance("/compute/vmSize", "&format=text").await).await,
        (200, "Standard_D2s_v5".into())
    );
    assert_eq!(
        text_of(agent.instance("/compute/userData", "&format=text").await).await,
        (200, String::new())
    );
}

#[tokio::test]
async fn text_lists_a_directory_one_child_per_line() {
    let agent = Agent::start_unlimited();
    let listings = [
        ("", "compute/\nnetwork/"),
        ("/network", "interface/"),
        ("/network/interface", "0/"),
        ("/network/interface/0", "ipv4/\nipv6/\nmacAddress"),
        ("/compute/tagsList", "0/\n1/"),
        ("/compute/tagsList/1", "name\nvalue"),
    ];
    for (path, expected) in listings {
        let listing = text_of(agent.instance(path, "&format=text").await).await;
        assert_eq!(listing, (200, expected.to_owned()), "{path}");
    }
    let compute = text_of(agent.instance("/compute", "&format=text").await)
        .await
        .1;
    let expected: Vec<String> = example_document()["compute"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            if v.is_object() || v.is_array() {
                format!("{k}/")
            } else {
                k.clone()
            }
        })
        .collect();
    assert_eq!(compute, expected.join("\n"));
    assert!(
        compute.starts_with("azEnvironment\nevictionPolicy\nisHostCompatibilityLayerVm\n"),
        "{compute}"
    );
}

#[tokio::test]
async fn extended_true_returns_the_extended_block() {
    let agent = Agent::start_unlimited();
    let full = crate::example::example_document_with_extended(API_VERSION);
    assert_eq!(
        json_of(agent.instance("", "&extended=true").await).await,
        (200, full.clone())
    );
    assert_eq!(
        json_of(agent.instance("", "&extended=false").await).await,
        (200, example_document())
    );
    assert_eq!(
        text_of(agent.instance("", "&extended=true&format=text").await).await,
        (200, "compute/\nnetwork/\nextended/".into())
    );
    assert_eq!(
        json_of(agent.instance("/extended", "&extended=true").await).await,
        (200, full["extended"].clone())
    );
    assert_eq!(json_of(agent.instance("/extended", "").await).await.0, 404);
    assert_eq!(
        json_of(agent.instance("", "&extended=maybe").await).await.0,
        400
    );
}

#[tokio::test]
async fn unknown_paths_are_404_naming_the_path_and_paths_are_case_sensitive() {
    let agent = Agent::start_unlimited();
    for path in [
        "/Compute",
        "/compute/VMID",
        "/compute/nothing",
        "/network/interface/1",
        "/network/interface/00",
        "/compute//vmId",
    ] {
        let (status, body) = json_of(agent.instance(path, "&format=text").await).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            body,
            json!({"error": format!("Not found: /metadata/instance{path}")})
        );
    }
    let (status, body) = json_of(
        agent
            .get("/metadata/elsewhere?api-version=2021-02-01")
            .await,
    )
    .await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "Not found: /metadata/elsewhere"}))
    );
    let (status, body) = json_of(agent.get("/").await).await;
    assert_eq!((status, body), (404, json!({"error": "Not found: /"})));
}

#[tokio::test]
async fn methods_other_than_get_are_405_with_allow() {
    let agent = Agent::start_unlimited();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in [
            format!("/metadata/instance?api-version={API_VERSION}"),
            "/metadata/instance/compute".into(),
            "/metadata/versions".into(),
        ] {
            let response = client()
                .request(method.parse().unwrap(), agent.url(&path))
                .header("Metadata", "true")
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers()["allow"], "GET");
            let (status, body) = json_of(response).await;
            assert_eq!(
                (status, body),
                (
                    405,
                    json!({"error": "Method not allowed: the metadata service answers GET only"})
                ),
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_the_server_header() {
    let agent = Agent::builder().args(["--rate-limit", "1"]).start();
    let mut seen = std::collections::HashSet::new();
    let requests = [
        client()
            .get(agent.url("/metadata/versions"))
            .header("Metadata", "true"),
        client()
            .get(agent.url("/metadata/versions"))
            .header("Metadata", "true"), // 429
        client().get(agent.url("/metadata/versions")),
        client().get(agent.url("/nothing")),
        client().post(agent.url("/nothing")),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        statuses.push(response.status().as_u16());
        assert_eq!(
            response.headers()["server"],
            format!("IMDS/{}", agent::VERSION)
        );
        let id = response.headers()["x-ms-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert!(seen.insert(id), "request ids must be unique");
    }
    assert_eq!(statuses, [200, 429, 429, 404, 404]);
}

#[tokio::test]
async fn no_input_yields_a_5xx() {
    let agent = Agent::start_unlimited();
    // 60 KB: the longest an HTTP client library sends; longer ones go raw below.
    let huge = "a/".repeat(30_000);
    let response = agent.instance(&format!("/{huge}"), "").await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().len() < 400,
        "the error must not echo 80 KB"
    );

    let cases: &[&[u8]] = &[
        b"GET /metadata/instance?api-version=%FF%FE&format=%C0 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        b"GET /metadata/instance/%FF%FE?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        b"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: \xff\xfe\r\nConnection: close\r\n\r\n",
        b"GET /metadata/instance/\xff?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        b"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nMetadata: true\r\nX-Odd: \x01\r\nConnection: close\r\n\r\n",
        b"GET /metadata/instance?%%%&&==&api-version HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"BREW /metadata/instance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    let oversized = format!(
        "GET /metadata/instance/{} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        "b".repeat(200_000)
    );
    let huge_header = format!(
        "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "c".repeat(200_000)
    );
    for request in cases
        .iter()
        .copied()
        .chain([oversized.as_bytes(), huge_header.as_bytes()])
    {
        let (status, _) = raw_request(agent.api, request);
        assert!(
            (200..500).contains(&status),
            "{status} for {:.200?}",
            String::from_utf8_lossy(request)
        );
    }
    let (status, body) = raw_request(agent.api, cases[0]);
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["error"]
                .as_str()
                .unwrap()
        ),
        (400, API_VERSION_ERROR)
    );
    let (status, _) = raw_request(agent.api, cases[2]);
    assert_eq!(
        status, 400,
        "a non-text Metadata header is no Metadata header"
    );
    // Still serving after all that.
    assert_eq!(
        agent
            .instance("/compute/vmId", "&format=text")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_rate_limit_is_per_caller_and_answers_429_with_retry_after() {
    let agent = Agent::builder().args(["--rate-limit", "2"]).start();
    let url = agent.url("/metadata/versions");
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .no_proxy()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let first = from([127, 0, 0, 1]);
    let mut statuses = Vec::new();
    let mut throttled = None;
    for _ in 0..3 {
        let response = first
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            throttled = Some(response);
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    let throttled = throttled.unwrap();
    assert_eq!(throttled.headers()["retry-after"], "1");
    assert_eq!(
        json_of(throttled).await.1,
        json!({"error": "Too many requests: the limit is 2 requests per second per caller"})
    );

    // Another caller has its own budget.
    let second = from([127, 0, 0, 2]);
    assert_eq!(
        second
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The bucket refills at the configured rate: time itself is what is tested (polling would
    // spend the tokens it waits for and add to the throttled count below).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        first
            .get(&url)
            .header("Metadata", "true")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("imds_throttled_requests_total"), 1.0);
}

#[tokio::test]
async fn rate_limit_zero_turns_it_off() {
    let agent = Agent::start_unlimited();
    for _ in 0..50 {
        assert_eq!(agent.get("/metadata/versions").await.status(), 200);
    }
}
