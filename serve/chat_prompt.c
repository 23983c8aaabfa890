/* ChatRequest to HarmonyPrompt (see chat_prompt.h for the mapping). Rank 0, network threads. */
#include "serve/chat_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/tool_schema.h"

/* System and developer messages joined, in order, by a blank line; NULL when there are none. */
static char *join_instructions(const ChatRequest *request) {
  size_t bytes = 1;
  for (size_t i = 0; i < request->num_messages; i++) bytes += strlen(request->messages[i].content) + 2;
  char *text = malloc(bytes);
  if (text == NULL) return NULL;
  text[0] = '\0';
  for (size_t i = 0; i < request->num_messages; i++) {
    const ChatMessage *m = &request->messages[i];
    if (m->role != HARMONY_ROLE_SYSTEM && m->role != HARMONY_ROLE_DEVELOPER) continue;
    if (text[0] != '\0') strcat(text, "\n\n");
    strcat(text, m->content);
  }
  return text;
}

static const char *add_function_name(ChatPrompt *out, const char *name) {
  char *full = malloc(strlen("functions.") + strlen(name) + 1);
  if (full == NULL) return NULL;
  sprintf(full, "functions.%s", name);
  out->names[out->num_names++] = full;
  return full;
}

/* The function a tool result answers: the latest earlier tool call with its id. */
static const char *called_function(const ChatRequest *request, size_t before, const char *tool_call_id) {
  for (size_t i = before; i-- > 0;) {
    const ChatMessage *m = &request->messages[i];
    for (size_t c = 0; c < m->num_tool_calls; c++) {
      if (strcmp(m->tool_calls[c].id, tool_call_id) == 0) return m->tool_calls[c].name;
    }
  }
  return NULL;
}

static bool add_message(ChatPrompt *out, HarmonyMessage message) {
  out->messages[out->prompt.num_messages++] = message;
  return true;
}

/* The index of the last user message (0 when there is none: no turn has a reasoning to keep). */
static size_t last_user_message(const ChatRequest *request) {
  size_t last = 0;
  for (size_t i = 0; i < request->num_messages; i++) {
    if (request->messages[i].role == HARMONY_ROLE_USER) last = i;
  }
  return last;
}

static bool map_message(const ChatRequest *request, size_t index, ChatPrompt *out, ApiError *error) {
  const ChatMessage *m = &request->messages[index];
  switch (m->role) {
  case HARMONY_ROLE_SYSTEM:
  case HARMONY_ROLE_DEVELOPER:
    return true; /* in the developer instructions */
  case HARMONY_ROLE_USER:
    return add_message(out, (HarmonyMessage){.role = HARMONY_ROLE_USER, .text = m->content});
  case HARMONY_ROLE_ASSISTANT:
    /* Harmony drops the reasoning of finished turns but keeps it within the turn in progress,
     * where it led to a tool call whose result follows (no user message after it). */
    if (m->reasoning != NULL && m->reasoning[0] != '\0' && index > last_user_message(request)) {
      add_message(out, (HarmonyMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = "analysis", .text = m->reasoning});
    }
    if (m->content[0] != '\0') {
      add_message(out, (HarmonyMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = "final", .text = m->content});
    }
    for (size_t c = 0; c < m->num_tool_calls; c++) {
      const char *recipient = add_function_name(out, m->tool_calls[c].name);
      if (recipient == NULL) goto out_of_memory;
      add_message(out, (HarmonyMessage){.role = HARMONY_ROLE_ASSISTANT, .recipient = recipient, .channel = "commentary",
                                        .content_type = "<|constrain|>json", .text = m->tool_calls[c].arguments});
    }
    return true;
  case HARMONY_ROLE_TOOL: {
    const char *function = called_function(request, index, m->tool_call_id);
    if (function == NULL) {
      api_error_set(error, 400, "messages", NULL,
                    "messages[%zu].tool_call_id '%.64s' answers no earlier assistant tool call", index, m->tool_call_id);
      return false;
    }
    const char *name = add_function_name(out, function);
    if (name == NULL) goto out_of_memory;
    return add_message(out, (HarmonyMessage){.role = HARMONY_ROLE_TOOL, .name = name, .recipient = "assistant",
                                             .channel = "commentary", .text = m->content});
  }
  }
out_of_memory:
  api_error_set(error, 500, NULL, NULL, "out of memory");
  error->type = "server_error";
  return false;
}

bool chat_prompt_build(const ChatRequest *request, const char *current_date, ChatPrompt *out, ApiError *error) {
  memset(out, 0, sizeof *out);
  size_t max_messages = 0;
  for (size_t i = 0; i < request->num_messages; i++) max_messages += 2 + request->messages[i].num_tool_calls;
  out->messages = calloc(max_messages + 1, sizeof *out->messages);
  out->names = calloc(max_messages + 1, sizeof *out->names);
  out->developer_instructions = join_instructions(request);
  if (out->messages == NULL || out->names == NULL || out->developer_instructions == NULL) {
    chat_prompt_free(out);
    api_error_set(error, 500, NULL, NULL, "out of memory");
    error->type = "server_error";
    return false;
  }
  /* tool_choice "none": the functions stay undeclared, so the model answers without them. */
  const bool declare_tools = request->tools != NULL && request->tool_choice == CHAT_TOOL_CHOICE_AUTO;
  if (declare_tools && (out->tools = tool_schema_namespace(request->tools)) == NULL) {
    chat_prompt_free(out);
    api_error_set(error, 500, NULL, NULL, "out of memory");
    error->type = "server_error";
    return false;
  }
  out->system = (HarmonySystem){.current_date = current_date, .reasoning = request->reasoning,
                                .function_tools = declare_tools};
  out->prompt.system = &out->system;
  out->prompt.tools = out->tools;
  out->prompt.developer_instructions = out->developer_instructions[0] != '\0' ? out->developer_instructions : NULL;
  out->prompt.messages = out->messages;
  for (size_t i = 0; i < request->num_messages; i++) {
    if (!map_message(request, i, out, error)) {
      chat_prompt_free(out);
      return false;
    }
  }
  return true;
}

void chat_prompt_free(ChatPrompt *prompt) {
  for (size_t i = 0; i < prompt->num_names; i++) free(prompt->names[i]);
  free(prompt->names);
  free(prompt->messages);
  free(prompt->developer_instructions);
  free(prompt->tools);
  memset(prompt, 0, sizeof *prompt);
}
