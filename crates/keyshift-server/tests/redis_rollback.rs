//! A failed verification rolls back against the real Redis. Its own test
//! binary: it sets the process-wide test hook before the server starts.

mod support;

use keyshift_testkit::{service, RedisUser, Service};
use reqwest::Method;
use support::{create_redis_secret, phases, rotate_and_wait, TestServer};

#[tokio::test]
async fn failed_verification_rolls_back_leaving_the_old_password_the_only_one() {
    let Some(url) = service(Service::Redis) else {
        return;
    };
    // DualAccept really adds the new password to Redis, then its
    // verification is reported refused: the rollback must remove it.
    std::env::set_var("KEYSHIFT_TEST_REFUSE_VERIFY", "dual_accept");
    let user = RedisUser::create(&url);
    let server = TestServer::start().await;
    let name = create_redis_secret(&server, &user, "0s").await;
    let done = rotate_and_wait(&server, &name).await;
    assert_eq!(done["status"], "rolled_back", "{done}");
    assert_eq!(
        phases(&done),
        [
            "precheck",
            "generate",
            "dual_accept",
            "roll_back",
            "rolled_back"
        ]
    );

    let (_, new) = server
        .call(
            Method::GET,
            &format!("/v1/secrets/{name}:value?version=2"),
            None,
        )
        .await;
    assert_eq!(new["state"], "failed");
    assert!(
        !user.logs_in(new["value"].as_str().unwrap()),
        "the new password must be gone"
    );
    assert!(
        user.logs_in(&user.password),
        "the old password must still work"
    );
    assert_eq!(user.password_count(), 1, "the old password is the only one");
    let (_, current) = server
        .call(Method::GET, &format!("/v1/secrets/{name}:value"), None)
        .await;
    assert_eq!(current["version"], 1);
}
