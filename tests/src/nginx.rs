//! A real web server (Debian's nginx, installed by `scripts/deps.sh test`) on 127.0.0.1 for the
//! HTTP origin tests: it publishes a folder with JSON directory listings (`autoindex_format
//! json`; its subfolders `Unavailable/` answer 503 and `Refused/` 403; HTML ones at `/html/`,
//! whose requests it logs; Basic authentication at `/private/`; and over HTTPS with a
//! certificate from its own CA on a second port) and answers ranged GETs, with its own config,
//! certificates, logs and pid file in a temp dir (never `/etc/nginx`). Tests stop and restart
//! it on the same ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Who may read [`Nginx::private_url`].
pub const PRIVATE_USER: &str = "ann";
pub const PRIVATE_PASSWORD: &str = "open-sesame-41";

pub struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    /// HTTPS, with a certificate from the test's own CA ([`Nginx::ca_file`]).
    tls_port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Starts a server on a free port publishing `root` at `/music/`.
    pub fn serving(root: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, tls_port) = (crate::free_port(), crate::free_port());
        make_certificates(dir.path());
        let d = dir.path().display();
        let servers = format!(
            "server {{\n\
               listen 127.0.0.1:{port};\n\
               location /music/ {{\n\
                 alias {root}/;\n\
                 autoindex on;\n\
                 autoindex_format json;\n\
               }}\n\
               location /music/Unavailable/ {{ return 503; }}\n\
               location /music/Refused/ {{ return 403; }}\n\
               location /html/ {{\n\
                 alias {root}/;\n\
                 autoindex on;\n\
                 access_log {d}/html-access.log;\n\
               }}\n\
               location /private/ {{\n\
                 alias {root}/;\n\
                 autoindex on;\n\
                 autoindex_format json;\n\
                 auth_basic \"music\";\n\
                 auth_basic_user_file {d}/htpasswd;\n\
               }}\n\
             }}\n\
             server {{\n\
               listen 127.0.0.1:{tls_port} ssl;\n\
               ssl_certificate {d}/server.pem;\n\
               ssl_certificate_key {d}/server.key;\n\
               location /music/ {{\n\
                 alias {root}/;\n\
                 autoindex on;\n\
                 autoindex_format json;\n\
               }}\n\
             }}\n",
            root = root.display()
        );
        let config = config(dir.path(), &servers);
        std::fs::write(dir.path().join("nginx.conf"), config).expect("nginx config");
        let users = format!("{PRIVATE_USER}:{{PLAIN}}{PRIVATE_PASSWORD}\n");
        std::fs::write(dir.path().join("htpasswd"), users).expect("htpasswd");
        let mut server = Self {
            dir,
            port,
            tls_port,
            child: None,
        };
        server.start();
        server
    }

    /// An HTTPS front for a plain HTTP server on `port` of 127.0.0.1 (an S3 server), as a
    /// home server puts nginx in front of MinIO: [`Nginx::tls_endpoint`], whose certificate
    /// only [`Nginx::ca_file`] vouches for. The Host header goes through unchanged, so SigV4
    /// signatures still hold.
    pub fn tls_proxy_to(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (plain, tls_port) = (crate::free_port(), crate::free_port());
        make_certificates(dir.path());
        let d = dir.path().display();
        let servers = format!(
            "server {{\n\
               listen 127.0.0.1:{plain};\n\
               return 404;\n\
             }}\n\
             server {{\n\
               listen 127.0.0.1:{tls_port} ssl;\n\
               ssl_certificate {d}/server.pem;\n\
               ssl_certificate_key {d}/server.key;\n\
               client_max_body_size 0;\n\
               location / {{\n\
                 proxy_pass http://127.0.0.1:{port};\n\
                 proxy_set_header Host $http_host;\n\
                 proxy_buffering off;\n\
               }}\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), config(dir.path(), &servers))
            .expect("nginx config");
        let mut server = Self {
            dir,
            port: plain,
            tls_port,
            child: None,
        };
        server.start();
        server
    }

    /// `https://127.0.0.1:<port>` of [`Nginx::tls_proxy_to`].
    pub fn tls_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.tls_port)
    }

    /// `http://127.0.0.1:<port>/music/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/music/", self.port)
    }

    /// The same folder behind Basic authentication ([`PRIVATE_USER`], [`PRIVATE_PASSWORD`]):
    /// `http://127.0.0.1:<port>/private/`.
    pub fn private_url(&self) -> String {
        format!("http://127.0.0.1:{}/private/", self.port)
    }

    /// The same folder with nginx's HTML listings: `http://127.0.0.1:<port>/html/`.
    pub fn html_url(&self) -> String {
        format!("http://127.0.0.1:{}/html/", self.port)
    }

    /// The requests [`html_url`](Self::html_url) was sent so far, one line each in nginx's
    /// `combined` format (`... "HEAD /html/a.flac HTTP/1.1" 200 ...`).
    pub fn html_requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("html-access.log")).unwrap_or_default()
    }

    /// The same folder over HTTPS, whose certificate (for 127.0.0.1) only
    /// [`ca_file`](Self::ca_file) vouches for: `https://127.0.0.1:<port>/music/`.
    pub fn tls_url(&self) -> String {
        format!("https://127.0.0.1:{}/music/", self.tls_port)
    }

    /// The certificate of the CA that signed the HTTPS server's, as a NAS's own CA would be.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Starts the server (again) on its port and waits until the port accepts connections.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let child = Command::new(binary())
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut child = child;
        if let Err(why) = crate::wait_listening(&mut child, self.port) {
            self.child = Some(child);
            let log = std::fs::read_to_string(self.dir.path().join("error.log"));
            self.stop();
            panic!(
                "nginx did not start on port {}: {why}\n{}",
                self.port,
                log.unwrap_or_default()
            );
        }
        self.child = Some(child);
    }

    /// Kills the server (the port refuses until [`start`](Self::start)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("nginx not found; `scripts/deps.sh test` installs it (package nginx-light)")
}

/// nginx's whole config: run in the foreground, every file in `dir`, and `servers`.
fn config(dir: &Path, servers: &str) -> String {
    let d = dir.display();
    format!(
        "daemon off;\n\
         master_process off;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path {d}/body;\n\
           proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n\
           uwsgi_temp_path {d}/uwsgi;\n\
           scgi_temp_path {d}/scgi;\n\
           {servers}\
         }}\n"
    )
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 (`server.pem`,
/// `server.key`) in `dir`, as mkcert or a NAS makes them.
fn make_certificates(dir: &Path) {
    let openssl = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(&format!(
        "req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=MusicFS-test-CA"
    ));
    openssl(&format!(
        "req {key} -keyout server.key -out server.csr -subj /CN=nas"
    ));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile server.ext",
    );
}
