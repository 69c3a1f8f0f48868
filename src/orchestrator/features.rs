//! `--features` while the run goes on: a feature's agent says when its work is being
//! verified and how it ended (`feature_updated` events: the agent log, the timeline,
//! the audit store), and the statuses are written into the features file: on the run
//! branch (worktree isolation), or in place (`--isolation shared`, where agents work in
//! the user's tree anyway).
//!
//! Attempts count every run's: the file's `attempts`, one for this run's first try, and
//! one per fix turn after a failed gate or review.

use std::sync::Mutex;

use crate::config::agents::ReviewSpec;
use crate::config::features::{Feature, FeatureStatus, write_back};
use crate::events::event::{AgentStatus, NoticeLevel, OrchEventKind};
use crate::orchestrator::turn::{Conversation, RunContext, TurnError};

/// The statuses this run gave features so far: (feature id, status, attempts).
#[derive(Debug, Default)]
pub(crate) struct FeaturesDone(Mutex<Vec<(String, FeatureStatus, u32)>>);

impl FeaturesDone {
    /// Records `update` and returns every status recorded so far.
    fn record(&self, update: (String, FeatureStatus, u32)) -> Vec<(String, FeatureStatus, u32)> {
        let mut done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        done.retain(|(id, _, _)| *id != update.0);
        done.push(update);
        done.clone()
    }
}

fn attempts(feature: &Feature, conversation: &Conversation) -> u32 {
    feature.attempts + 1 + conversation.fixes
}

impl RunContext {
    /// The feature an agent implements (`--features`).
    pub(crate) fn feature_of(&self, agent: &str) -> Option<&Feature> {
        self.config.features.as_ref()?.by_agent(agent)
    }

    /// A check that still fails after its rounds: a feature's agent fails with `reason`
    /// (the backlog goes on with its next feature, and a later run tries it again); any
    /// other agent asks the user.
    pub(crate) async fn still_failing(&self, agent: &str, reason: String) -> Result<(), TurnError> {
        if self.feature_of(agent).is_some() {
            return Err(TurnError::Failed(reason));
        }
        self.link.needs_you(agent, reason).await?;
        Ok(())
    }

    /// The review steps of a feature's agent: each reviewer checks the feature's steps
    /// as its points; without a configured reviewer, one on the agent's own backend
    /// does, when the feature has steps.
    pub(crate) fn feature_reviews(
        &self,
        agent: &str,
        mut steps: Vec<ReviewSpec>,
    ) -> Vec<ReviewSpec> {
        let Some(feature) = self.feature_of(agent).filter(|f| !f.steps.is_empty()) else {
            return steps;
        };
        if steps.is_empty() {
            steps.push(ReviewSpec {
                name: "feature-steps".into(),
                backend: None,
                model: None,
                instructions: String::new(),
                max_rounds: ReviewSpec::DEFAULT_MAX_ROUNDS,
            });
        }
        for step in &mut steps {
            let mut instructions = format!(
                "The work implements feature `{}` ({}). Check each of its steps as one point, in this order, by reading the code and running what you need:\n{}",
                feature.id,
                feature.name,
                feature.numbered_steps()
            );
            if !step.instructions.trim().is_empty() {
                instructions.push_str(&format!("\nAlso check:\n{}\n", step.instructions.trim()));
            }
            step.instructions = instructions;
        }
        steps
    }

    /// The agent's work is about to be checked (its gates and review).
    pub(crate) async fn feature_verifying(&self, conversation: &Conversation) {
        let Some(feature) = self.feature_of(&conversation.id) else {
            return;
        };
        self.bus
            .publish(OrchEventKind::FeatureUpdated {
                feature: feature.id.clone(),
                agent: conversation.id.clone(),
                track: feature.track.clone(),
                status: FeatureStatus::Verifying,
                attempts: attempts(feature, conversation),
                reason: None,
            })
            .await;
    }

    /// The agent ended: its feature passed (it succeeded) or failed. Says so and writes
    /// the statuses into the features file. A stopped agent leaves its feature as it
    /// was, for a resumed or later run. Err: the statuses did not reach the file.
    pub(crate) async fn feature_finished(
        &self,
        conversation: &Conversation,
        status: &AgentStatus,
    ) -> Result<(), String> {
        let Some(feature) = self.feature_of(&conversation.id) else {
            return Ok(());
        };
        let (to, reason) = match status {
            AgentStatus::Succeeded => (FeatureStatus::Passed, None),
            AgentStatus::Failed { reason } => (FeatureStatus::Failed, Some(reason.clone())),
            AgentStatus::Blocked { by } => {
                (FeatureStatus::Failed, Some(format!("blocked by `{by}`")))
            }
            _ => return Ok(()),
        };
        let attempts = attempts(feature, conversation);
        self.bus
            .publish(OrchEventKind::FeatureUpdated {
                feature: feature.id.clone(),
                agent: conversation.id.clone(),
                track: feature.track.clone(),
                status: to,
                attempts,
                reason,
            })
            .await;
        let updates = self
            .features_done
            .record((feature.id.clone(), to, attempts));
        let message = format!(
            "orch: feature {} {} (attempt {attempts})",
            feature.id,
            to.as_str()
        );
        self.write_features(updates, message).await
    }

    /// Writes `updates` into the features file: on the run branch at its path there, or
    /// in place without isolation.
    async fn write_features(
        &self,
        updates: Vec<(String, FeatureStatus, u32)>,
        message: String,
    ) -> Result<(), String> {
        let Some(backlog) = self.config.features.clone() else {
            return Ok(());
        };
        let Some(isolation) = &self.isolation else {
            let file = backlog.file.clone();
            let written = tokio::task::spawn_blocking(move || {
                let now = std::fs::read_to_string(&file).unwrap_or_default();
                let text = write_back(&now, &updates)
                    .or_else(|_| write_back(&backlog.text, &updates))
                    .map_err(|err| format!("the features file is not valid: {err}"))?;
                replace_file(&file, text.as_bytes())
                    .map_err(|err| format!("failed to write {}: {err}", file.display()))
            })
            .await
            .unwrap_or_else(|err| Err(format!("the write ended abnormally: {err}")));
            return written.map_err(|err| {
                format!("the feature statuses did not reach the features file: {err}")
            });
        };
        let Some(path) = backlog.repo_path.clone() else {
            if self
                .features_done
                .0
                .lock()
                .map(|d| d.len() == 1)
                .unwrap_or(false)
            {
                self.notice(
                    NoticeLevel::Warning,
                    format!(
                        "the features file {} is outside the repository: its statuses are kept in the audit store only",
                        backlog.file.display()
                    ),
                )
                .await;
            }
            return Ok(());
        };
        let base = backlog.text.clone();
        let update = move |tip: Option<String>| {
            // The file at the tip, unless an agent left it unreadable: then the file as
            // the run started with it.
            let (text, unreadable) = match tip {
                Some(tip) if crate::config::features::parse(&tip).is_ok() => (tip, false),
                Some(_) => (base, true),
                None => (base, false),
            };
            write_back(&text, &updates)
                .map(|text| (text, unreadable))
                .map_err(|err| format!("the features file is not valid: {err}"))
        };
        let unreadable = isolation
            .update_run_file(path.clone(), update, message)
            .await
            .map_err(|err| {
                format!("the feature statuses did not reach `{path}` on the run branch: {err}")
            })?;
        if unreadable {
            self.notice(
                NoticeLevel::Warning,
                format!(
                    "`{path}` on the run branch is no longer a valid features file (an agent changed it): the statuses are written into the file as the run started with it"
                ),
            )
            .await;
        }
        Ok(())
    }
}

/// Replaces `file` with `bytes` whole: a sibling temporary file, synced, renamed over it.
fn replace_file(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(std::path::Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".orch-features")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    if let Ok(meta) = std::fs::metadata(file) {
        std::fs::set_permissions(temp.path(), meta.permissions())?;
    }
    temp.persist(file).map_err(|err| err.error)?;
    Ok(())
}
