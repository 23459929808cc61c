/*
 * The floor under bench/h1p.rb: what a parser returning H1P's headers Hash costs when it does
 * no parsing at all. `H1PFloor.prepare(raw, headers)` learns where each value of `headers` (a
 * Hash H1P made of `raw`) lies in `raw`; then each `parse_headers` asks its source block for
 * the chunk (protected, as any extension must call Ruby) and builds the same Hash: the same
 * keys (interned), new Strings for the same values, sized once and filled in bulk, as H1P does.
 * `read_body` answers nil. Built by bench/h1p.rb with mkmf.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>
#include <ruby.h>
#include <ruby/encoding.h>

#ifndef HAVE_RB_HASH_NEW_CAPA
/* Ruby 3.1 exports it under its internal name. */
VALUE rb_hash_new_with_size(st_index_t size);
#define rb_hash_new_capa(n) rb_hash_new_with_size(n)
#endif

#define MAX_PAIRS 64

static VALUE keys[MAX_PAIRS];
/* A value that is the same for every request (an interned String, an Integer), or Qundef. */
static VALUE constants[MAX_PAIRS];
static long starts[MAX_PAIRS], lengths[MAX_PAIRS];
static long pair_count;
/* The bytes a request must have for the values' spans (the one `prepare` learnt from). */
static long needed;
static VALUE source = Qnil;
static ID id_call;

static VALUE interned(VALUE s) {
  VALUE frozen = rb_enc_interned_str(RSTRING_PTR(s), RSTRING_LEN(s), rb_enc_get(s));
  rb_gc_register_mark_object(frozen);
  return frozen;
}

static int learn(VALUE key, VALUE value, VALUE raw) {
  if (pair_count == MAX_PAIRS) rb_raise(rb_eArgError, "more than %d pairs", MAX_PAIRS);
  Check_Type(key, T_STRING);
  long i = pair_count++;
  keys[i] = interned(key);
  constants[i] = Qundef;
  if (RB_TYPE_P(value, T_STRING) && !OBJ_FROZEN(value)) {
    const char *found = memmem(RSTRING_PTR(raw), RSTRING_LEN(raw), RSTRING_PTR(value), RSTRING_LEN(value));
    if (!found) rb_raise(rb_eArgError, "%" PRIsVALUE " is not in the request", value);
    starts[i] = found - RSTRING_PTR(raw);
    lengths[i] = RSTRING_LEN(value);
    if (starts[i] + lengths[i] > needed) needed = starts[i] + lengths[i];
  } else if (RB_TYPE_P(value, T_STRING)) {
    constants[i] = interned(value);
  } else if (FIXNUM_P(value)) {
    constants[i] = value;
  } else {
    rb_raise(rb_eArgError, "no floor for a %" PRIsVALUE, rb_obj_class(value));
  }
  return ST_CONTINUE;
}

static VALUE prepare(VALUE self, VALUE raw, VALUE headers) {
  Check_Type(raw, T_STRING);
  Check_Type(headers, T_HASH);
  pair_count = 0;
  needed = 0;
  long n = RHASH_SIZE(headers);
  VALUE pairs = rb_funcall(headers, rb_intern("to_a"), 0);
  for (long i = 0; i < n; i++) {
    VALUE pair = rb_ary_entry(pairs, i);
    learn(rb_ary_entry(pair, 0), rb_ary_entry(pair, 1), raw);
  }
  source = rb_block_proc();
  return Qnil;
}

static VALUE call_source(VALUE block) {
  return rb_funcall(block, id_call, 0);
}

static VALUE parse_headers(VALUE self) {
  int state = 0;
  VALUE raw = rb_protect(call_source, source, &state);
  if (state) rb_jump_tag(state);
  StringValue(raw);
  if (RSTRING_LEN(raw) < needed) rb_raise(rb_eArgError, "not the request prepare was given");
  VALUE pairs[2 * MAX_PAIRS];
  const char *bytes = RSTRING_PTR(raw);
  for (long i = 0; i < pair_count; i++) {
    pairs[2 * i] = keys[i];
    pairs[2 * i + 1] = constants[i] != Qundef ? constants[i] : rb_str_new(bytes + starts[i], lengths[i]);
  }
  VALUE hash = rb_hash_new_capa(pair_count);
  rb_hash_bulk_insert(2 * pair_count, pairs, hash);
  RB_GC_GUARD(raw);
  return hash;
}

static VALUE read_body(VALUE self) {
  return Qnil;
}

void Init_h1p_floor(void) {
  id_call = rb_intern("call");
  rb_gc_register_address(&source);
  VALUE floor = rb_define_module("H1PFloor");
  rb_define_module_function(floor, "prepare", prepare, 2);
  rb_define_module_function(floor, "parse_headers", parse_headers, 0);
  rb_define_module_function(floor, "read_body", read_body, 0);
}
