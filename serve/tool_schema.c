/* JSON-schema tools to harmony's TypeScript namespace (see tool_schema.h). */
#include "serve/tool_schema.h"

#include <jansson.h>
#include <stdbool.h>
#include <string.h>

#include "serve/buffer.h"

#define MAX_DEPTH 8 /* deeper schemas are `any`: the depth of a hostile request stays bounded */
/* `depth` below is the nesting of objects (the indent of their properties). */

static bool write_type(ByteBuffer *b, json_t *schema, int depth);

static bool write_literal(ByteBuffer *b, json_t *value) {
  return buffer_append_owned(b, json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT));
}

static bool write_union(ByteBuffer *b, json_t *options, int depth) {
  bool ok = true;
  for (size_t i = 0; ok && i < json_array_size(options); i++) {
    if (i > 0) ok = buffer_append_str(b, " | ");
    ok = ok && write_type(b, json_array_get(options, i), depth + 1);
  }
  return ok;
}

static bool is_required(json_t *required, const char *name) {
  for (size_t i = 0; i < json_array_size(required); i++) {
    const char *r = json_string_value(json_array_get(required, i));
    if (r && strcmp(r, name) == 0) return true;
  }
  return false;
}

static bool write_indent(ByteBuffer *b, int depth) {
  bool ok = true;
  for (int i = 0; ok && i < depth; i++) ok = buffer_append_str(b, "    ");
  return ok;
}

/* " // default: value": a string unquoted when the property is an enum of strings (harmony's rule). */
static bool write_default(ByteBuffer *b, json_t *property) {
  json_t *fallback = json_object_get(property, "default");
  if (fallback == NULL) return true;
  if (!buffer_append_str(b, " // default: ")) return false;
  if (json_is_string(fallback) && json_object_get(property, "enum")) return buffer_append_str(b, json_string_value(fallback));
  return write_literal(b, fallback);
}

/* `{\n// description\nname?: type, // default: value\n...}`, nested objects indented by four
 * spaces a level; the caller writes what follows. */
static bool write_properties(ByteBuffer *b, json_t *object, int depth) {
  json_t *properties = json_object_get(object, "properties"), *required = json_object_get(object, "required");
  const char *name;
  json_t *property;
  bool ok = buffer_append_str(b, "{\n");
  json_object_foreach(properties, name, property) {
    const char *description = json_string_value(json_object_get(property, "description"));
    if (ok && description) {
      ok = write_indent(b, depth) && buffer_append_str(b, "// ") && buffer_append_str(b, description) &&
           buffer_append_str(b, "\n");
    }
    ok = ok && write_indent(b, depth) && buffer_append_str(b, name) &&
         buffer_append_str(b, is_required(required, name) ? ": " : "?: ") && write_type(b, property, depth + 1);
    if (ok && json_is_true(json_object_get(property, "nullable"))) ok = buffer_append_str(b, " | null");
    ok = ok && buffer_append_str(b, ",") && write_default(b, property) && buffer_append_str(b, "\n");
  }
  return ok && write_indent(b, depth) && buffer_append_str(b, "}");
}

static bool write_named_type(ByteBuffer *b, const char *type, json_t *schema, int depth) {
  if (strcmp(type, "string") == 0 || strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0) {
    return buffer_append_str(b, type);
  }
  if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0) return buffer_append_str(b, "number");
  if (strcmp(type, "array") == 0) {
    json_t *items = json_object_get(schema, "items");
    return items ? write_type(b, items, depth) && buffer_append_str(b, "[]") : buffer_append_str(b, "Array<any>");
  }
  if (strcmp(type, "object") == 0) {
    return json_object_size(json_object_get(schema, "properties")) > 0 ? write_properties(b, schema, depth)
                                                                        : buffer_append_str(b, "object");
  }
  return buffer_append_str(b, "any");
}

static bool write_type(ByteBuffer *b, json_t *schema, int depth) {
  if (!json_is_object(schema) || depth > MAX_DEPTH) return buffer_append_str(b, "any");
  json_t *choices = json_object_get(schema, "enum");
  if (json_array_size(choices) > 0) {
    bool ok = true;
    for (size_t i = 0; ok && i < json_array_size(choices); i++) {
      ok = (i == 0 || buffer_append_str(b, " | ")) && write_literal(b, json_array_get(choices, i));
    }
    return ok;
  }
  json_t *any_of = json_object_get(schema, "anyOf");
  if (!json_is_array(any_of)) any_of = json_object_get(schema, "oneOf");
  if (json_array_size(any_of) > 0) return write_union(b, any_of, depth);
  json_t *type = json_object_get(schema, "type");
  if (json_is_string(type)) return write_named_type(b, json_string_value(type), schema, depth);
  if (json_array_size(type) > 0) {
    bool ok = true;
    for (size_t i = 0; ok && i < json_array_size(type); i++) {
      const char *t = json_string_value(json_array_get(type, i));
      ok = (i == 0 || buffer_append_str(b, " | ")) && write_named_type(b, t ? t : "", schema, depth);
    }
    return ok;
  }
  return buffer_append_str(b, json_object_size(json_object_get(schema, "properties")) > 0 ? "object" : "any");
}

static bool write_function(ByteBuffer *b, json_t *function) {
  const char *name = json_string_value(json_object_get(function, "name"));
  const char *description = json_string_value(json_object_get(function, "description"));
  json_t *parameters = json_object_get(function, "parameters");
  bool ok = true;
  if (description) ok = buffer_append_str(b, "// ") && buffer_append_str(b, description) && buffer_append_str(b, "\n");
  ok = ok && buffer_append_str(b, "type ") && buffer_append_str(b, name) && buffer_append_str(b, " = (");
  if (ok && json_object_size(json_object_get(parameters, "properties")) > 0) {
    ok = buffer_append_str(b, "_: ") && write_properties(b, parameters, 0);
  }
  return ok && buffer_append_str(b, ") => any;\n\n");
}

char *tool_schema_namespace(const void *tools_json) {
  json_t *tools = (json_t *)tools_json;
  ByteBuffer b = {0};
  bool ok = buffer_append_str(&b, "## functions\n\nnamespace functions {\n\n");
  for (size_t i = 0; ok && i < json_array_size(tools); i++) {
    ok = write_function(&b, json_object_get(json_array_get(tools, i), "function"));
  }
  ok = ok && buffer_append_str(&b, "} // namespace functions");
  if (!ok) buffer_free(&b);
  return b.data;
}
