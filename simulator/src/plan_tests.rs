//! Planning for a given cluster, checked against the smallest-cluster answer.

use knit_mesh::Profile;

use super::*;
use crate::flags::catalogue;

/// `simulator/scenarios/catalogue.toml` on hosts of 8 cores and 32G, reserved to 80%:
/// 29.5 cores of reservations over 6.4 usable cores a host.
fn request(runs: u64) -> PlanRequest {
    PlanRequest {
        host_cpu: 8.0,
        host_memory: "32G".into(),
        services: catalogue(include_str!("../scenarios/catalogue.toml")).unwrap(),
        failures: 1,
        target_utilisation: 0.8,
        max_hosts: 50,
        runs,
        seed: 1,
        profile: Profile::Fast,
    }
}

#[test]
fn a_given_cluster_survives_the_failures_the_smallest_cluster_search_agrees_with() {
    let r = request(0);
    let answer = failures_survived(&r, 8, &mut Silent).unwrap();
    // 29.5 reserved cores: five hosts (32 usable) hold them, but not every set of five
    // survivors does as the scheduler places them, so six hosts survive no failure...
    assert_eq!(failures_survived(&r, 6, &mut Silent).unwrap().failures, 0);
    // ...and eight survive two.
    assert_eq!(answer.failures, 2, "{answer:?}");
    assert_eq!(answer.hosts, 8);
    assert_eq!(answer.failure_sets_checked, FAILURE_SETS);
    // The other question, asked both ways, gives the same line.
    let k = |failures| {
        plan(&PlanRequest {
            failures,
            ..request(0)
        })
        .unwrap()
        .hosts
    };
    assert_eq!(
        k(2),
        8,
        "the smallest cluster for 2 failures is these 8 hosts"
    );
    assert!(k(3) > 8, "8 hosts are not enough for 3 failures");
}

#[test]
fn more_hosts_survive_more_failures() {
    let r = request(0);
    let survived: Vec<usize> = [6, 8, 12, 20]
        .iter()
        .map(|&n| failures_survived(&r, n, &mut Silent).unwrap().failures)
        .collect();
    assert!(survived.windows(2).all(|w| w[0] < w[1]), "{survived:?}");
}

#[test]
fn a_given_cluster_reports_heal_times_for_its_answer() {
    let answer = failures_survived(&request(2), 7, &mut Silent).unwrap();
    assert_eq!(answer.failures, 1, "{answer:?}");
    assert_eq!(answer.runs, 2);
    assert_eq!(answer.heal_ms.count, 2, "{answer:?}");
    assert_eq!(answer.detection_ms.count, 2, "{answer:?}");
    assert_eq!(answer.unhealed, 0);
}

#[test]
fn a_cluster_too_small_for_its_services_says_so() {
    let err = failures_survived(&request(1), 3, &mut Silent).unwrap_err();
    assert!(matches!(err, PlanError::TooSmall(3)), "{err}");
    assert!(err.to_string().contains("add hosts"), "{err}");
    let mut empty = request(1);
    empty.services.clear();
    let err = failures_survived(&empty, 3, &mut Silent).unwrap_err();
    assert!(err.to_string().contains("--service"), "{err}");
}

#[test]
fn a_cluster_that_fits_with_one_host_survives_all_but_one() {
    let mut r = request(0);
    r.services = vec![crate::flags::parse_service("tiny:2:0.1:64M").unwrap()];
    let answer = failures_survived(&r, 4, &mut Silent).unwrap();
    assert_eq!(answer.failures, 3);
    assert_eq!(answer.runs, 0, "no simulation was asked for");
}
