/* OpenAI function tools (JSON Schema parameters) as the TypeScript namespace harmony's developer
 * message declares them in, the way openai/harmony renders it:
 *
 *   ## functions
 *
 *   namespace functions {
 *
 *   // Current weather in a city
 *   type get_weather = (_: {
 *   // The city
 *   city: string,
 *   unit?: "celsius" | "fahrenheit", // default: "celsius"
 *   }) => any;
 *
 *   } // namespace functions
 *
 * Types: string, number (number and integer), boolean, null, enums as unions of literals, arrays
 * as T[] (Array<any> without items), objects with properties inline (nested ones indented four
 * spaces a level), anyOf / oneOf / type lists as unions, `nullable` as `| null`, anything else
 * `any`. Properties not in `required` get `?`; a default follows as a comment, a string one
 * quoted unless the property is an enum (as openai/harmony writes them). */
#ifndef GPTOSS_SERVE_TOOL_SCHEMA_H
#define GPTOSS_SERVE_TOOL_SCHEMA_H

/* `tools` is the request's checked `tools` array (json_t *). The caller frees the text; NULL when
 * out of memory. */
char *tool_schema_namespace(const void *tools);

#endif
