/* A checked ChatRequest as the harmony conversation GPT-OSS continues.
 *
 * OpenAI's system and developer messages become harmony's developer instructions (the harmony
 * system message is the model's own: identity, reasoning effort, date); an assistant's tool call
 * becomes a commentary message `to=functions.NAME` with JSON content, and the tool's answer a
 * `functions.NAME to=assistant` commentary message, its name found from tool_call_id. Reasoning a
 * client sends back (`reasoning_content` of an assistant message) is rendered as an analysis
 * message only within the turn in progress (after the last user message: it led to the tool call
 * whose result follows) and dropped from finished turns, as harmony prescribes.
 *
 * Function tools (with tool_choice "auto") are declared in the developer message's "# Tools"
 * section as harmony's TypeScript namespace (serve/tool_schema.h), and the system message says
 * they are called in the commentary channel; with tool_choice "none" they are left out. */
#ifndef GPTOSS_SERVE_CHAT_PROMPT_H
#define GPTOSS_SERVE_CHAT_PROMPT_H

#include "io/harmony.h"
#include "serve/chat_request.h"

typedef struct {
  HarmonySystem system;
  HarmonyPrompt prompt;        /* points into this struct and the request: keep both alive */
  HarmonyMessage *messages;
  char *developer_instructions;
  char *tools;                 /* the developer message's "# Tools" section (serve/tool_schema.h) */
  char **names;                /* "functions.NAME" strings made for tool calls and results */
  size_t num_names;
} ChatPrompt;

/* `current_date` ("YYYY-MM-DD", or NULL) goes into the system message. A tool result whose
 * tool_call_id names no earlier tool call is a 400. */
bool chat_prompt_build(const ChatRequest *request, const char *current_date, ChatPrompt *out, ApiError *error);
void chat_prompt_free(ChatPrompt *prompt);

#endif
