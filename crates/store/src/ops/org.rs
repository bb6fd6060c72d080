//! The organization, its projects and their API keys, and authentication.

use crate::authcache::{Cached, LiveKey};
use crate::conn::{Conn, Val};
use crate::ops::docs::to_json;
use crate::{Result, Store, StoreError};
use tessera_domain::ids::new_id;
use tessera_domain::project::{Project, ProjectInput};
use tessera_domain::secrets;
use tessera_domain::time::now_string;

/// Most projects one organization may list at once; far above any real deployment.
const MAX_PROJECTS_LISTED: i64 = 10_000;
/// Most keys one project may hold (one per integration); bounds key lookups and lists.
const MAX_KEYS_PER_PROJECT: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    Server,
    Client,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Server => "server",
            KeyKind::Client => "client",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "server" => Ok(KeyKind::Server),
            "client" => Ok(KeyKind::Client),
            other => Err(StoreError::Internal(format!("unknown key kind {other}"))),
        }
    }
}

/// Proof that a request authenticated with a live key of this project. Only this module
/// constructs it; every tenant-scoped operation requires one.
#[derive(Debug, Clone)]
pub struct Tenant {
    project_id: String,
    app_id: String,
    kind: KeyKind,
    trusted_domains: Vec<String>,
    case_sensitive_codes: bool,
    timezone: String,
    rate_limits: Option<tessera_domain::project::RateLimits>,
    client_redeem_enabled: bool,
}

impl Tenant {
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    pub fn kind(&self) -> KeyKind {
        self.kind
    }
    pub fn trusted_domains(&self) -> &[String] {
        &self.trusted_domains
    }
    /// Whether client-side keys may redeem (not only validate).
    pub fn client_redeem_enabled(&self) -> bool {
        self.client_redeem_enabled
    }
    /// The project's request budgets, when it has its own.
    pub fn rate_limits(&self) -> Option<tessera_domain::project::RateLimits> {
        self.rate_limits
    }
    pub fn case_sensitive_codes(&self) -> bool {
        self.case_sensitive_codes
    }
    /// The project's IANA time zone, for validity hours and daily limits.
    pub fn timezone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.timezone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
    /// The key under which a code is unique in this project.
    pub fn code_key(&self, code: &str) -> String {
        if self.case_sensitive_codes {
            code.to_string()
        } else {
            code.to_uppercase()
        }
    }
}

/// Proof of management credentials.
#[derive(Debug, Clone)]
pub struct Management {
    _private: (),
}

impl Management {
    /// For the command line, which runs on the server with direct access to the database
    /// and so already holds every right the management API grants.
    pub fn local_operator() -> Self {
        Management { _private: () }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKey {
    pub app_id: String,
    pub project_id: String,
    pub kind: KeyKind,
    pub name: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A freshly created key: the only moment its secret exists outside the client.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: ApiKey,
    pub app_token: String,
}

fn load_project(c: &mut dyn Conn, id: &str) -> Result<Project> {
    c.query_opt("SELECT data FROM projects WHERE id = $1 AND deleted_at IS NULL", &[id.into()])?
        .ok_or_else(|| StoreError::not_found("project", id))?
        .json(0)
}

fn insert_key(c: &mut dyn Conn, project_id: &str, kind: KeyKind, name: Option<String>, now: &str) -> Result<NewKey> {
    let count = c
        .query_one(
            "SELECT COUNT(*) FROM api_keys WHERE project_id = $1 AND revoked_at IS NULL",
            &[project_id.into()],
        )?
        .int(0)?;
    if count >= MAX_KEYS_PER_PROJECT {
        return Err(StoreError::Conflict {
            key: "limit_exceeded",
            message: "Too many API keys".into(),
            details: format!("a project may hold at most {MAX_KEYS_PER_PROJECT} live keys; revoke unused ones first"),
        });
    }
    let app_id = secrets::new_app_id();
    let app_token = secrets::new_token();
    c.execute(
        "INSERT INTO api_keys (app_id, project_id, kind, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            app_id.clone().into(),
            project_id.into(),
            kind.as_str().into(),
            name.clone().into(),
            secrets::hash_token(&app_token).into(),
            now.into(),
        ],
    )?;
    Ok(NewKey {
        key: ApiKey {
            app_id,
            project_id: project_id.to_string(),
            kind,
            name,
            created_at: now.to_string(),
            revoked_at: None,
        },
        app_token,
    })
}

fn row_to_key(r: &crate::conn::Row) -> Result<ApiKey> {
    Ok(ApiKey {
        app_id: r.text(0)?,
        project_id: r.text(1)?,
        kind: KeyKind::parse(&r.text(2)?)?,
        name: r.opt_text(3)?,
        created_at: r.text(4)?,
        revoked_at: r.opt_text(5)?,
    })
}

pub struct CreatedProject {
    pub project: Project,
    pub server_key: NewKey,
    pub client_key: NewKey,
}

impl Store {
    /// Creates the organization on first start. Credentials from the environment win and
    /// replace stored ones (that is how an operator rotates them); without them a pair is
    /// generated and returned so the caller can print it once.
    pub async fn init_organization(&self, id: Option<String>, token: Option<String>) -> Result<Option<(String, String)>> {
        self.write(move |c| {
            // Nodes starting together on an empty database must create one organization.
            c.lock_key("organization")?;
            let existing = c.query_opt("SELECT id FROM organization LIMIT 1", &[])?;
            let now = now_string();
            match (existing, id, token) {
                (Some(row), Some(id), Some(token)) => {
                    let org_id = row.text(0)?;
                    c.execute(
                        "UPDATE organization SET management_id = $1, management_token_hash = $2 WHERE id = $3",
                        &[id.into(), secrets::hash_token(&token).into(), org_id.into()],
                    )?;
                    Ok(None)
                }
                (Some(_), _, _) => Ok(None),
                (None, id, token) => {
                    let generated = id.is_none() || token.is_none();
                    let id = id.unwrap_or_else(|| format!("mgmt_{}", &secrets::new_token()[..24]));
                    let token = token.unwrap_or_else(secrets::new_token);
                    c.execute(
                        "INSERT INTO organization (id, management_id, management_token_hash, created_at) VALUES ($1, $2, $3, $4)",
                        &[
                            new_id("org").into(),
                            id.clone().into(),
                            secrets::hash_token(&token).into(),
                            now.into(),
                        ],
                    )?;
                    Ok(generated.then_some((id, token)))
                }
            }
        })
        .await
    }

    /// The tenant of a project, for background jobs that continue work a tenant started
    /// (such as code generation). Never reachable from a request.
    pub async fn tenant_for_job(&self, project_id: String) -> Result<Tenant> {
        self.read(move |c| {
            let project = load_project(c, &project_id)?;
            Ok(Tenant {
                project_id,
                app_id: "job".into(),
                kind: KeyKind::Server,
                trusted_domains: Vec::new(),
                case_sensitive_codes: project.case_sensitive_codes,
                timezone: project.timezone,
                rate_limits: project.rate_limits,
                client_redeem_enabled: project.client_redeem_enabled,
            })
        })
        .await
    }

    pub async fn authenticate_management(&self, id: String, token: String) -> Result<Option<Management>> {
        self.read(move |c| {
            let row = c.query_opt(
                "SELECT management_token_hash FROM organization WHERE management_id = $1",
                &[id.into()],
            )?;
            let ok = match row {
                Some(r) => secrets::token_matches(&token, &r.text(0)?),
                None => {
                    // Same work whether or not the id exists.
                    let _ = secrets::token_matches(&token, "");
                    false
                }
            };
            Ok(ok.then_some(Management { _private: () }))
        })
        .await
    }

    /// Looks up a live key of the given kind in a live project. Revocation takes effect at
    /// once on every node: see `authcache` for what is answered from memory and why.
    pub async fn authenticate_key(&self, app_id: String, token: String, kind: KeyKind) -> Result<Option<Tenant>> {
        if app_id.len() > 128 || token.len() > 128 {
            return Ok(None);
        }
        let accepts = |token_hash: &str, tenant: &Tenant| secrets::token_matches(&token, token_hash) && tenant.kind == kind;
        match self.auth.get(&app_id) {
            Some(Cached::Missing) => {
                metrics::counter!("tessera_auth_cache_total", "outcome" => "refused_missing").increment(1);
                let _ = secrets::token_matches(&token, "");
                return Ok(None);
            }
            Some(Cached::Live(live)) => {
                let LiveKey { token_hash, tenant } = *live;
                if !accepts(&token_hash, &tenant) {
                    metrics::counter!("tessera_auth_cache_total", "outcome" => "refused_mismatch").increment(1);
                    return Ok(None);
                }
                if self.auth.accept_from_cache {
                    metrics::counter!("tessera_auth_cache_total", "outcome" => "accepted").increment(1);
                    return Ok(Some(tenant));
                }
            }
            None => {}
        }
        metrics::counter!("tessera_auth_cache_total", "outcome" => "read").increment(1);
        let seen = self.auth.generation();
        let id = app_id.clone();
        let found = self
            .read(move |c| {
                let row = c.query_opt(
                    "SELECT k.project_id, k.token_hash, k.kind, p.data FROM api_keys k JOIN projects p ON p.id = k.project_id \
                     WHERE k.app_id = $1 AND k.revoked_at IS NULL AND p.deleted_at IS NULL",
                    &[id.clone().into()],
                )?;
                let Some(row) = row else { return Ok(None) };
                let project: Project = row.json(3)?;
                let tenant = Tenant {
                    project_id: row.text(0)?,
                    app_id: id,
                    kind: KeyKind::parse(&row.text(2)?)?,
                    trusted_domains: project.client_trusted_domains,
                    case_sensitive_codes: project.case_sensitive_codes,
                    timezone: project.timezone,
                    rate_limits: project.rate_limits,
                    client_redeem_enabled: project.client_redeem_enabled,
                };
                Ok(Some((row.text(1)?, tenant)))
            })
            .await?;
        match found {
            None => {
                self.auth.put(&app_id, Cached::Missing, seen);
                let _ = secrets::token_matches(&token, "");
                Ok(None)
            }
            Some((token_hash, tenant)) => {
                let ok = accepts(&token_hash, &tenant);
                self.auth.put(
                    &app_id,
                    Cached::Live(Box::new(LiveKey {
                        token_hash,
                        tenant: tenant.clone(),
                    })),
                    seen,
                );
                Ok(ok.then_some(tenant))
            }
        }
    }

    pub async fn create_project(&self, _m: &Management, input: ProjectInput) -> Result<CreatedProject> {
        input.validate(true)?;
        let result = self
            .write(move |c| {
                let now = now_string();
                let project = input.create(new_id("proj"), &now);
                c.execute(
                    "INSERT INTO projects (id, data, created_at) VALUES ($1, $2, $3)",
                    &[project.id.clone().into(), to_json(&project)?.into(), now.clone().into()],
                )?;
                let server_key = insert_key(c, &project.id, KeyKind::Server, Some("default server-side key".into()), &now)?;
                let client_key = insert_key(c, &project.id, KeyKind::Client, Some("default client-side key".into()), &now)?;
                Ok(CreatedProject {
                    project,
                    server_key,
                    client_key,
                })
            })
            .await;
        // Before the change is acknowledged, so no later request is answered from before it.
        self.auth.invalidate();
        result
    }

    pub async fn get_project(&self, _m: &Management, id: String) -> Result<Project> {
        self.read(move |c| load_project(c, &id)).await
    }

    pub async fn list_projects(&self, _m: &Management) -> Result<Vec<Project>> {
        self.read(|c| {
            c.query(
                "SELECT data FROM projects WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT $1",
                &[Val::Int(MAX_PROJECTS_LISTED)],
            )?
            .iter()
            .map(|r| r.json(0))
            .collect()
        })
        .await
    }

    pub async fn update_project(&self, _m: &Management, id: String, input: ProjectInput) -> Result<Project> {
        input.validate(false)?;
        let result = self
            .write(move |c| {
                c.lock_key(&format!("project:{id}"))?;
                let existing = load_project(c, &id)?;
                let project = input.update(&existing, &now_string());
                c.execute(
                    "UPDATE projects SET data = $1 WHERE id = $2",
                    &[to_json(&project)?.into(), id.into()],
                )?;
                Ok(project)
            })
            .await;
        // Before the change is acknowledged, so no later request is answered from before it.
        self.auth.invalidate();
        result
    }

    /// Marks the project deleted and revokes all its keys in one transaction, so no
    /// request authenticates for it afterwards. Its rows stay for the retention period.
    pub async fn delete_project(&self, _m: &Management, id: String) -> Result<()> {
        let result = self
            .write(move |c| {
                c.lock_key(&format!("project:{id}"))?;
                load_project(c, &id)?;
                let now = now_string();
                c.execute(
                    "UPDATE projects SET deleted_at = $1 WHERE id = $2",
                    &[now.clone().into(), id.clone().into()],
                )?;
                c.execute(
                    "UPDATE api_keys SET revoked_at = $1 WHERE project_id = $2 AND revoked_at IS NULL",
                    &[now.into(), id.into()],
                )?;
                Ok(())
            })
            .await;
        // Before the change is acknowledged, so no later request is answered from before it.
        self.auth.invalidate();
        result
    }

    pub async fn create_api_key(&self, _m: &Management, project_id: String, kind: KeyKind, name: Option<String>) -> Result<NewKey> {
        if let Some(n) = &name {
            tessera_domain::customer::check_identifier("name", n)?;
        }
        let result = self
            .write(move |c| {
                c.lock_key(&format!("project:{project_id}"))?;
                load_project(c, &project_id)?;
                insert_key(c, &project_id, kind, name, &now_string())
            })
            .await;
        // Before the change is acknowledged, so no later request is answered from before it.
        self.auth.invalidate();
        result
    }

    pub async fn list_api_keys(&self, _m: &Management, project_id: String) -> Result<Vec<ApiKey>> {
        self.read(move |c| {
            load_project(c, &project_id)?;
            c.query(
                "SELECT app_id, project_id, kind, name, created_at, revoked_at FROM api_keys WHERE project_id = $1 ORDER BY created_at, app_id LIMIT 1000",
                &[project_id.into()],
            )?
            .iter()
            .map(row_to_key)
            .collect()
        })
        .await
    }

    pub async fn revoke_api_key(&self, _m: &Management, project_id: String, app_id: String) -> Result<ApiKey> {
        let result = self
            .write(move |c| {
                load_project(c, &project_id)?;
                c.execute(
                    "UPDATE api_keys SET revoked_at = $1 WHERE project_id = $2 AND app_id = $3 AND revoked_at IS NULL",
                    &[now_string().into(), project_id.clone().into(), app_id.clone().into()],
                )?;
                let row = c
                    .query_opt(
                        "SELECT app_id, project_id, kind, name, created_at, revoked_at FROM api_keys WHERE project_id = $1 AND app_id = $2",
                        &[project_id.into(), app_id.clone().into()],
                    )?
                    .ok_or_else(|| StoreError::not_found("api_key", app_id))?;
                row_to_key(&row)
            })
            .await;
        // Before the change is acknowledged, so no later request is answered from before it.
        self.auth.invalidate();
        result
    }
}
