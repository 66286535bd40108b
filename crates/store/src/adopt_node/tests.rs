use super::*;

fn row(status: Option<&str>) -> NodeInstance {
    NodeInstance {
        id: "V1StGXR8_Z5j".into(),
        status: status.map(str::to_string),
        infra: Some(NodeInfra {
            provider: "railway".into(),
            service_id: "svc-1".into(),
            environment_id: "env-1".into(),
            project_id: Some("prj-1".into()),
            gateway_token: Some("tok".into()),
            ..NodeInfra::default()
        }),
        ..NodeInstance::default()
    }
}

fn status_of(r: &NodeInstance) -> AgentStatus {
    plan_instance(r, None).unwrap().status
}

#[test]
fn every_node_status_has_a_place() {
    use AgentStatus as S;
    let expected = [
        ("starting", S::Starting),
        ("idle", S::Idle),
        ("claimed", S::Claimed),
        ("pending_acceptance", S::PendingAcceptance),
        ("tainted", S::Deleting),
        ("crashed", S::Crashed),
        ("claiming", S::Starting),
        ("dead", S::Deleting),
        ("sleeping", S::Starting),
    ];
    assert_eq!(expected.len(), NODE_STATUSES.len());
    for (node, ours) in expected {
        assert_eq!(status_of(&row(Some(node))), ours, "{node}");
    }
    let mut slept_claimed = row(Some("sleeping"));
    slept_claimed.claimed_at = Some(Utc::now());
    assert_eq!(status_of(&slept_claimed), S::Claimed);
    assert_eq!(
        status_of(&row(None)),
        S::Deleting,
        "an infra row alone is torn down"
    );
}

#[test]
fn unclaimed_agents_without_a_token_are_torn_down_and_claimed_ones_kept() {
    for (status, ours) in [
        ("idle", AgentStatus::Deleting),
        ("starting", AgentStatus::Deleting),
        ("claiming", AgentStatus::Deleting),
        ("claimed", AgentStatus::Claimed),
        ("crashed", AgentStatus::Crashed),
    ] {
        let mut r = row(Some(status));
        r.infra.as_mut().unwrap().gateway_token = None;
        assert_eq!(status_of(&r), ours, "{status}");
    }
}

#[test]
fn rows_that_cannot_be_adopted_are_named() {
    let unknown = plan_instance(&row(Some("hibernating")), None).unwrap_err();
    assert!(
        unknown.contains("\"V1StGXR8_Z5j\"") && unknown.contains("\"hibernating\""),
        "{unknown}"
    );

    let mut no_infra = row(Some("idle"));
    no_infra.infra = None;
    let e = plan_instance(&no_infra, None).unwrap_err();
    assert!(e.contains("V1StGXR8_Z5j") && e.contains("no service id"), "{e}");

    let mut blank = row(Some("claimed"));
    blank.infra.as_mut().unwrap().service_id = " ".into();
    assert!(plan_instance(&blank, None).unwrap_err().contains("no service id"));

    let mut other = row(Some("idle"));
    other.infra.as_mut().unwrap().provider = "fly".into();
    assert!(plan_instance(&other, None).unwrap_err().contains("\"fly\""));

    let mut bad_id = row(Some("idle"));
    bad_id.id = "a b".into();
    assert!(
        plan_instance(&bad_id, None)
            .unwrap_err()
            .contains("not an agent id")
    );
}

#[test]
fn shared_project_rows_need_the_node_pools_project() {
    let mut shared = row(Some("claimed"));
    shared.infra.as_mut().unwrap().project_id = None;
    let e = plan_instance(&shared, None).unwrap_err();
    assert!(e.contains("RAILWAY_PROJECT_ID"), "{e}");
    let planned = plan_instance(&shared, Some("node-pool-project")).unwrap();
    assert!(planned.shared_project);
    assert!(
        !plan_instance(&row(Some("claimed")), Some("node-pool-project"))
            .unwrap()
            .shared_project
    );
}

#[test]
fn target_idle_is_read_as_node_reads_it() {
    assert_eq!(parse_target_idle("3"), Ok(3));
    assert_eq!(
        parse_target_idle("12abc"),
        Ok(12),
        "parseInt stops at the first non-digit"
    );
    assert_eq!(parse_target_idle("0"), Ok(0));
    assert!(parse_target_idle("51").unwrap_err().contains("target_idle"));
    assert!(parse_target_idle("many").is_err());
}
