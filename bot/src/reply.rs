//! What a command answers, independent of how it reaches Discord: the gateway client
//! sends it with serenity's HTTP client, the interactions endpoint returns it as the
//! HTTP response body, and a deferred command sends it as a follow-up (an edit of the
//! original response).

use serde_json::{json, Value};
use serenity::all::{
    AutocompleteChoice, CreateActionRow, CreateAutocompleteResponse, CreateEmbed,
    CreateInteractionResponse, CreateInteractionResponseMessage,
};

/// Discord's EPHEMERAL message flag.
pub const EPHEMERAL: u64 = 1 << 6;

#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub content: String,
    pub embeds: Vec<CreateEmbed>,
    pub components: Vec<CreateActionRow>,
    pub ephemeral: bool,
}

impl Reply {
    pub fn text(s: impl Into<String>) -> Reply {
        Reply {
            content: s.into(),
            ..Default::default()
        }
    }
    /// Only the caller sees it (anything showing credentials, and every refusal).
    pub fn private(s: impl Into<String>) -> Reply {
        Reply {
            content: s.into(),
            ephemeral: true,
            ..Default::default()
        }
    }
    pub fn ephemeral(mut self) -> Reply {
        self.ephemeral = true;
        self
    }
    pub fn embed(mut self, e: CreateEmbed) -> Reply {
        self.embeds.push(e);
        self
    }
    pub fn components(mut self, rows: Vec<CreateActionRow>) -> Reply {
        self.components = rows;
        self
    }

    pub fn to_message(&self) -> CreateInteractionResponseMessage {
        let mut m = CreateInteractionResponseMessage::new()
            .content(self.content.clone())
            .ephemeral(self.ephemeral);
        if !self.embeds.is_empty() {
            m = m.embeds(self.embeds.clone());
        }
        if !self.components.is_empty() {
            m = m.components(self.components.clone());
        }
        m
    }

    /// The body of `PATCH /webhooks/{app}/{token}/messages/@original`.
    pub fn to_edit_body(&self) -> Value {
        json!({
            "content": self.content,
            "embeds": self.embeds,
            "components": self.components,
        })
    }
}

/// The answer to one interaction.
#[derive(Clone, Debug)]
pub enum Response {
    Pong,
    Message(Reply),
    /// "Thinking…": the real answer follows as an edit of the original response.
    Deferred {
        ephemeral: bool,
    },
    Choices(Vec<(String, String)>),
}

impl Response {
    pub fn to_serenity(&self) -> CreateInteractionResponse {
        match self {
            Response::Pong => CreateInteractionResponse::Pong,
            Response::Message(r) => CreateInteractionResponse::Message(r.to_message()),
            Response::Deferred { ephemeral } => CreateInteractionResponse::Defer(
                CreateInteractionResponseMessage::new().ephemeral(*ephemeral),
            ),
            Response::Choices(c) => {
                let choices = c
                    .iter()
                    .map(|(name, value)| AutocompleteChoice::new(name.clone(), value.clone()))
                    .collect();
                CreateInteractionResponse::Autocomplete(
                    CreateAutocompleteResponse::new().set_choices(choices),
                )
            }
        }
    }

    /// The JSON the interactions endpoint answers with.
    pub fn to_json(&self) -> Value {
        // Discord documents the pong as exactly `{"type": 1}` (serenity adds `"data": null`).
        if let Response::Pong = self {
            return json!({"type": 1});
        }
        serde_json::to_value(self.to_serenity()).unwrap_or_else(|_| {
            json!({"type": 4, "data": {"content": "Something went wrong.", "flags": EPHEMERAL}})
        })
    }
}
