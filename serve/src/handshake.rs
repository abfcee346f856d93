//! The worker's checks of a client's `Hello` (docs/PROTOCOL.md, "Handshake"), as pure code: the
//! version range, the dataset's fingerprint and the recipe. A refusal names both sides.

use crate::catalog::{Catalog, Served};
use shardfeed_engine::loader::{recipe, LoaderConfig};
use shardfeed_wire::auth::short_hex;
use shardfeed_wire::frame::VERSION;
use shardfeed_wire::message::Hello;

/// What a `Hello` that passes the checks asks for.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// The dataset.
    pub served: &'a Served,
    /// The configuration the recipe gives (the worker sets threads and buffers).
    pub config: LoaderConfig,
}

/// Checks `hello` against what this worker (`worker`, for messages) serves. The error is the
/// `Refused` reason sent to the client.
///
/// # Errors
///
/// The reason, naming both sides.
pub fn check<'a>(
    hello: &Hello,
    catalog: &'a Catalog,
    worker: &str,
) -> Result<Accepted<'a>, String> {
    if !(hello.min_version..=hello.max_version).contains(&VERSION) {
        return Err(format!(
            "worker {worker} speaks protocol version {VERSION}; client {} speaks {}..={}",
            hello.client, hello.min_version, hello.max_version
        ));
    }
    let Some(served) = catalog.find(&hello.dataset) else {
        return Err(format!(
            "worker {worker} serves {}; client {} asked for {}… (another dataset, or another \
             version of it)",
            catalog.describe(),
            hello.client,
            short_hex(&hello.dataset, 6)
        ));
    };
    let config = recipe::parse(&hello.recipe).map_err(|e| {
        format!(
            "worker {worker} cannot honour client {}'s recipe: {e}",
            hello.client
        )
    })?;
    Ok(Accepted { served, config })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardfeed_engine::demo::synthetic_dataset;

    fn hello(catalog: &Catalog, recipe: String) -> Hello {
        Hello {
            min_version: 1,
            max_version: 1,
            client_nonce: [0; 32],
            dataset: catalog.datasets[0].fingerprint,
            recipe,
            client: "rank0".into(),
        }
    }

    #[test]
    fn a_hello_for_served_data_and_a_valid_recipe_passes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = synthetic_dataset(tmp.path(), 2, 4).expect("dataset");
        let catalog = Catalog::open(&root).expect("catalog");
        assert_eq!(catalog.datasets.len(), 2);
        let config = LoaderConfig {
            batch_size: 3,
            ..LoaderConfig::train(32)
        };
        let h = hello(&catalog, recipe::canonical(&config));
        let ok = check(&h, &catalog, "w1").expect("accepted");
        assert_eq!(ok.served.name, "train");
        assert_eq!(ok.config.batch_size, 3);
    }

    #[test]
    fn refusals_name_both_sides() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = synthetic_dataset(tmp.path(), 2, 4).expect("dataset");
        let catalog = Catalog::open(&root).expect("catalog");
        let good = recipe::canonical(&LoaderConfig::train(32));
        let mut h = hello(&catalog, good.clone());
        h.dataset = [0xab; 32];
        let e = check(&h, &catalog, "w1").expect_err("other data");
        assert!(
            e.contains("worker w1 serves train ") && e.contains("client rank0 asked for abababab"),
            "{e}"
        );
        let mut h = hello(&catalog, good);
        h.min_version = 2;
        h.max_version = 3;
        let e = check(&h, &catalog, "w1").expect_err("other version");
        assert!(e.contains("version 1") && e.contains("2..=3"), "{e}");
        let h = hello(&catalog, "{\"colour\":1}".into());
        let e = check(&h, &catalog, "w1").expect_err("bad recipe");
        assert!(e.contains("colour"), "{e}");
    }
}
