//! Test certificates made with rcgen in a temporary directory: a CA, a broker certificate
//! for 127.0.0.1 and localhost, a client certificate, and a second, unrelated CA with its
//! own client certificate (for the refusals). PEM files, as an operator would have them.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem);
        for (prefix, cn) in [("", "steme test CA"), ("other-", "another CA")] {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate()?;
            write(&format!("{prefix}ca.pem"), params.self_signed(&key)?.pem())?;
            let issuer = Issuer::new(params, key);
            let mut leaves = vec![("client", "indexer-1", Vec::new())];
            if prefix.is_empty() {
                let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
                leaves.push(("broker", "broker-1", names));
            }
            for (name, cn, sans) in leaves {
                let mut p = CertificateParams::new(sans)?;
                p.distinguished_name.push(DnType::CommonName, cn);
                let key = KeyPair::generate()?;
                write(
                    &format!("{prefix}{name}.pem"),
                    p.signed_by(&key, &issuer)?.pem(),
                )?;
                write(&format!("{prefix}{name}.key"), key.serialize_pem())?;
            }
        }
        Ok(Pki { dir })
    }

    /// A file of the set: `ca.pem`, `broker.pem`/`.key`, `client.pem`/`.key`,
    /// `other-ca.pem`, `other-client.pem`/`.key`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The broker flags for TLS with these certificates, accepting client certificates
    /// from the test CA.
    pub fn broker_args(&self) -> Vec<String> {
        let f = |n: &str| self.file(n).display().to_string();
        vec![
            "--tls-cert".into(),
            f("broker.pem"),
            "--tls-key".into(),
            f("broker.key"),
            "--tls-client-ca".into(),
            f("ca.pem"),
        ]
    }
}
