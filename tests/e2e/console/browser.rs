//! Headless Chromium driven over WebDriver (chromedriver on a loopback port), from Debian's
//! `chromium` and `chromium-driver` packages (`scripts/install-deps` installs them). The driver
//! runs in a process group of its own, and the whole group (driver and browser) is killed when
//! the [`Browser`] is dropped, passed or failed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value as Json, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
/// The longest any one wait of these tests lasts.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where the tests' screenshots go (under the target directory; not committed).
pub fn shots() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A fresh browser (its own profile) at 1280×900. Fails, saying what to install, when
    /// Chromium or its driver is missing: these tests never pass by not running.
    pub async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (DRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the console's browser tests need Debian's `chromium` and `chromium-driver` packages (scripts/install-deps installs them: apt-get install {package})"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        // The port is free when picked and taken only when chromedriver binds it: another
        // process can take it in between, and chromedriver then exits. Try another port.
        let mut attempts = 0;
        let (mut guard, url) = loop {
            attempts += 1;
            let port = free_port();
            let log = profile.path().join(format!("chromedriver-{attempts}.log"));
            let mut cmd = Command::new(DRIVER);
            cmd.arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut guard = Guard(Some(cmd.spawn().expect("start chromedriver")));
            let url = format!("http://127.0.0.1:{port}");
            let began = Instant::now();
            let exited = loop {
                if reqwest::get(format!("{url}/status")).await.is_ok() {
                    break None;
                }
                if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
                    break Some(status);
                }
                assert!(
                    began.elapsed() < WAIT,
                    "chromedriver did not answer on {url} within {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            match exited {
                None => break (guard, url),
                Some(status) => {
                    let said = std::fs::read_to_string(&log).unwrap_or_default();
                    assert!(
                        attempts < 5,
                        "chromedriver exited ({status}) {attempts} times; last it said:\n{said}"
                    );
                }
            }
        };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&url),
        )
        .await
        .expect("the browser did not start in time")
        .expect("a WebDriver session");
        Browser {
            client,
            driver: guard.0.take().unwrap(),
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Signs in on the login page (wherever the browser is sent to it).
    pub async fn sign_in(&self, base: &str, token: &str, then: &str) {
        self.goto(&format!("{base}{then}")).await;
        let field = self.client.find(Locator::Css("#token")).await.unwrap();
        field.send_keys(token).await.unwrap();
        self.shot("login").await;
        self.client
            .find(Locator::Css("form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until_js(
            &format!("return location.pathname === {};", json!(then)),
            "the page after signing in",
        )
        .await;
    }

    pub async fn js(&self, script: &str) -> Json {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Waits (bounded) until `script` returns true.
    pub async fn until_js(&self, script: &str, what: &str) {
        let began = Instant::now();
        loop {
            if self.js(script).await == Json::Bool(true) {
                return;
            }
            if began.elapsed() > WAIT {
                let text = self.js("return document.body.innerText;").await;
                panic!("waited {WAIT:?} for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot as `NAME.png` under [`shots`].
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Ends the WebDriver session; the processes are killed on drop either way.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
    }
}

/// Kills a process group (chromedriver and the browser it started) and reaps the driver.
fn kill_group(child: &mut Child) {
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills the driver if starting the browser fails half-way.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            kill_group(c);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}
