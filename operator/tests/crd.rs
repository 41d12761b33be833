//! The generated MinerPool CRD: the checked-in copies never drift from the Rust types, and the
//! CRD has what `kubectl` users rely on.
//!
//! After changing the types, regenerate both copies:
//! `cargo run -p minerpool-operator -- crd > crds/minerpool.yaml && cp crds/minerpool.yaml charts/minerpool-operator/crds/`

use serde_json::Value;

fn generated() -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_minerpool-operator"))
        .arg("crd")
        .output()
        .expect("run minerpool-operator crd");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn checked_in_copies_match_the_generated_crd() {
    let generated = generated();
    for copy in [
        "crds/minerpool.yaml",
        "charts/minerpool-operator/crds/minerpool.yaml",
    ] {
        let path = format!("{}/../{copy}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            on_disk == generated,
            "{copy} drifted from the Rust types: regenerate it (see the top of this file)"
        );
    }
}

fn version(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]
}

/// Every property of every object in the schema has a description (`kubectl explain` works).
fn undocumented(schema: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            if property.get("description").is_none() {
                missing.push(here.clone());
            }
            undocumented(property, &here, missing);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key) {
            undocumented(inner, path, missing);
        }
    }
}

#[test]
fn the_crd_has_what_users_rely_on() {
    let crd: Value = serde_yaml::from_str(&generated()).unwrap();
    assert_eq!(crd["spec"]["group"], "minerpool.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "mp");
    let v = version(&crd);
    assert_eq!(v["name"], "v1alpha1");
    assert!(v["subresources"]["status"].is_object());
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.node.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["statusReplicasPath"],
        ".status.node.replicas"
    );
    let columns: Vec<(&str, &str)> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    // Kubernetes before 1.21 serves CronJobs as batch/v1beta1, whose status has no last
    // success: the schedule column is what `kubectl get mp` can show there.
    assert_eq!(
        columns,
        [
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Replicas", ".status.node.readyReplicas"),
            ("Rewards scheduled", ".status.jobs.rewards.lastScheduleTime"),
            ("Last rewards", ".status.jobs.rewards.lastSuccessfulTime"),
            ("Payouts", ".status.payouts"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rule = &spec["properties"]["rewards"]["x-kubernetes-validations"][0];
    assert_eq!(
        rule["rule"],
        "self.feePercent + self.poolsPercent + self.validatorsPercent == 100"
    );
    let mut missing = Vec::new();
    undocumented(spec, "spec", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn the_example_minerpool_reads_as_a_minerpool() {
    let path = format!("{}/../examples/minerpool.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.split("\n---").next().unwrap();
    let example: minerpool_operator::crd::MinerPool =
        serde_yaml::from_str(first).expect("the example is a MinerPool");
    let r = &example.spec.rewards;
    assert_eq!(
        u32::from(r.fee_percent) + u32::from(r.pools_percent) + u32::from(r.validators_percent),
        100
    );
    assert_eq!(example.spec.node.replicas, Some(2));
    assert_eq!(example.spec.mongodb.uri_secret_ref.name, "mongodb-uri");
}
