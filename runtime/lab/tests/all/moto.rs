//! moto_server answers the Route 53 API.

use meridian_lab::{Moto, free_port};

use crate::support::{pid_alive, pids_mentioning, started};

#[test]
fn moto_answers_list_hosted_zones_and_dies_with_its_owner() {
    let port = free_port();
    let Some(moto) = started("moto", Moto::start(port)) else {
        return;
    };
    assert_eq!(moto.url(), format!("http://127.0.0.1:{port}"));
    let xml = moto.list_hosted_zones().unwrap();
    assert!(xml.contains("ListHostedZonesResponse"), "{xml}");
    let pid = moto.pid();
    drop(moto);
    assert!(!pid_alive(pid));
    // The Python process behind the shim is gone too (it was in the same process group).
    assert!(pids_mentioning(&format!("-p {port}")).is_empty());
}
