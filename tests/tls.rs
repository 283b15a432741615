//! cloudstack-ovn over mutual TLS, configured the way operators register it
//! (`ovn.nb.*` registration details), against an NB with ovs-pki
//! certificates; a wrong CA and a missing key are clear configuration errors.

mod common;

use common::scenario::*;
use common::*;
use serde_json::{json, Value};

fn over_tls(nb: &TlsNb, key: &std::path::Path, ca: &std::path::Path, payload: Value) -> Value {
    json!({
        "physical-network-extension-details": {
            "ovn.nb.connection": nb.remote(),
            "ovn.nb.private_key": key,
            "ovn.nb.certificate": nb.client_cert(),
            "ovn.nb.ca_cert": ca,
        },
        "network-extension-details": {},
        "payload": payload,
    })
}

#[test]
fn mutual_tls_and_its_failures() {
    let nb = TlsNb::start();
    // OVN_NB_DB points nowhere: the registration details must be what is used.
    let out = ok(run_cs(
        "unix:/nonexistent/nb.sock",
        "implement-network",
        &over_tls(&nb, &nb.client_key(), &nb.ca(), network(7)),
    ));
    assert!(out.contains("ovn://cs-net-7"), "{out}");
    assert!(nb.nbctl(&["ls-list"]).contains("cs-net-7"));

    // A CA that did not sign the server: refused, exit 3, the reason named.
    let msg = fails(
        run_cs(
            "unix:/nonexistent/nb.sock",
            "implement-network",
            &over_tls(&nb, &nb.client_key(), &nb.other_ca(), network(8)),
        ),
        3,
    );
    assert!(msg.contains("certificate") && (msg.contains("UnknownIssuer") || msg.contains("BadSignature")), "{msg}");

    // A missing key file: exit 3 naming the file.
    let missing = std::path::Path::new("/nonexistent/client-privkey.pem");
    let msg = fails(
        run_cs("unix:/nonexistent/nb.sock", "implement-network", &over_tls(&nb, missing, &nb.ca(), network(9))),
        3,
    );
    assert!(msg.contains("/nonexistent/client-privkey.pem"), "{msg}");
}
