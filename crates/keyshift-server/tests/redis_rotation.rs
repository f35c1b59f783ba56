//! A `dual` rotation of a real Redis ACL user, end to end through the API.

mod support;

use keyshift_testkit::{service, RedisUser, Service};
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{create_redis_secret, rotate_and_wait, start_rotation, unique_secret, TestServer};

async fn value(server: &TestServer, name: &str, version: u64) -> String {
    let (status, body) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:value?version={version}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["value"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn both_passwords_work_during_the_overlap_and_only_the_new_one_after_revoke() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let name = create_redis_secret(&server, &user, "2s").await;

    let id = start_rotation(&server, &name).await;

    // Wait (bounded) for the overlap: DualAccept and Promote are done.
    let mut in_overlap = false;
    for _ in 0..200 {
        let (_, r) = server
            .call(Method::GET, &format!("/v1/rotations/{id}"), None)
            .await;
        if r["phase"] == "overlap" {
            in_overlap = true;
            break;
        }
        assert_eq!(r["status"], "running", "{r}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(in_overlap, "rotation never reached the overlap");
    let new = value(&server, &name, 2).await;
    assert!(
        user.logs_in(&user.password),
        "old password must work during the overlap"
    );
    assert!(
        user.logs_in(&new),
        "new password must work during the overlap"
    );
    assert_eq!(user.password_count(), 2);

    let done = server.wait_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        !user.logs_in(&user.password),
        "old password must get WRONGPASS after revoke"
    );
    assert!(user.logs_in(&new));
    assert_eq!(user.password_count(), 1);
    let (_, current) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(current["value"], new.as_str());
}

#[tokio::test]
async fn a_missing_user_fails_precheck_without_touching_anything() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let name = create_redis_secret(&server, &user, "0s").await;
    let password = user.password.clone();
    drop(user); // deletes the ACL user
    let done = rotate_and_wait(&server, &name).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["phases"][0]["phase"], "precheck");
    assert_eq!(done["phases"][0]["outcome"], "failed");
    let reason = done["reason"].as_str().unwrap();
    assert!(reason.contains("does not exist"), "{reason}");
    assert!(!reason.contains(&password));
    let (_, versions) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:versions"), None)
        .await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "no version generated"
    );
}

#[tokio::test]
async fn hand_put_values_must_be_what_redis_accepts() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let address = user.url.trim_start_matches("redis://").to_owned();
    let target = json!({"address": address, "user": user.name});
    // A made-up value would be a `current` that Redis refuses (I1).
    for body in [
        json!({"name": unique_secret("r"), "kind": "redis", "generate": true, "target": target}),
        json!({"name": unique_secret("r"), "kind": "redis", "value": "not-the-password", "target": target}),
    ] {
        let (status, answer) = server.call(Method::POST, "/v1/secrets", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let name = create_redis_secret(&server, &user, "0s").await;
    let (status, answer) = server
        .call(
            Method::POST,
            &format!("/v1/secrets/{name}:versions"),
            Some(json!({"value": "also-not-it"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // Deleting the values of a password Redis still accepts needs force.
    let (status, answer) = server
        .call(Method::DELETE, &format!("/v1/secrets/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/secrets/{name}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}
