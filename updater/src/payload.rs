//! Cutting a /usr slot image into independently compressed chunks (release side).
