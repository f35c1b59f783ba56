//! The post-revoke check against the real Redis: after Revoke, keyshift
//! asks the target whether the old password is refused and the new one
//! works. When the target still accepts the old one, the rotation must not
//! report success. Its own test binary: it sets the process-wide test hook
//! (the revoke's verifications reported the other way round) before the
//! server starts.

mod support;

use keyshift_testkit::{service, RedisUser, Service};
use reqwest::Method;
use support::{create_redis_secret, phases, rotate_and_wait, TestServer};

#[tokio::test]
async fn an_old_credential_still_accepted_after_revoke_fails_the_rotation_loudly() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "revoke");
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let name = create_redis_secret(&server, &user, "0s").await;
    let done = rotate_and_wait(&server, &name).await;

    assert_ne!(done["status"], "succeeded", "{done}");
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("version 1 is still accepted by the target"),
        "the reason names the check that failed: {done}"
    );
    let seen = phases(&done);
    assert!(seen.contains(&"revoke".to_owned()), "{seen:?}");
    assert!(!seen.contains(&"done".to_owned()), "{seen:?}");
    // The audit log says how it ended.
    let (_, audit) = server
        .call(Method::GET, &format!("/v1/audit?secret={name}"), None)
        .await;
    let finish = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rotation.finish")
        .expect("the rotation's end is audited")
        .clone();
    assert_ne!(finish["outcome"], "succeeded", "{finish}");
}
