/*
 * runtime/abi_check.c — compile-time pins of the plugin ABI (backend.h) and of the public structs
 * an embedder fills (bastion.h).
 *
 * Plugins built against an older header must keep working, so a v1 field may never move or change
 * size: structs grow only by appending. Every offset and size of version 1 is pinned here for
 * LP64 (the platforms we ship); an accidental edit to a header breaks the build instead of
 * silently breaking every out-of-tree plugin. When a field is appended, add its pin below and
 * raise the struct's size pin; never change an existing offset.
 */
#include <bastion/bastion.h>

#include <stddef.h>
#include <stdint.h>

#define PIN(type, field, off) \
    _Static_assert(offsetof(type, field) == (off), #type "." #field " moved: the ABI is frozen")
#define PIN_SIZE(type, size) \
    _Static_assert(sizeof(type) == (size), #type " changed size: append fields under v2+ only")

/* Enums cross the boundary as 32-bit values inside the structs and as return values. */
_Static_assert(sizeof(bst_status) == 4, "bst_status must stay 32-bit");
_Static_assert(sizeof(bst_dtype) == 4, "bst_dtype must stay 32-bit");
_Static_assert(sizeof(bst_log_level) == 4, "bst_log_level must stay 32-bit");
_Static_assert(BST_ABI_VERSION_MIN <= BST_ABI_VERSION, "ABI minimum above the current version");
_Static_assert(BST_OK == 0, "BST_OK is 0 by contract");

#if UINTPTR_MAX == UINT64_MAX

PIN(bst_attr, struct_size, 0);
PIN(bst_attr, key, 4);
PIN(bst_attr, kind, 8);
PIN(bst_attr, count, 12);
PIN(bst_attr, ints, 16);
PIN(bst_attr, f, 48);
PIN_SIZE(bst_attr, 56);

PIN(bst_tensor_desc, struct_size, 0);
PIN(bst_tensor_desc, dtype, 4);
PIN(bst_tensor_desc, layout, 8);
PIN(bst_tensor_desc, rank, 12);
PIN(bst_tensor_desc, shape, 16);
PIN(bst_tensor_desc, strides, 48);
PIN(bst_tensor_desc, sym, 80);
PIN(bst_tensor_desc, binding, 96);
PIN(bst_tensor_desc, reserved, 100);
PIN(bst_tensor_desc, offset, 104);
PIN_SIZE(bst_tensor_desc, 112);

PIN(bst_node_desc, struct_size, 0);
PIN(bst_node_desc, op, 4);
PIN(bst_node_desc, n_inputs, 8);
PIN(bst_node_desc, n_attrs, 12);
PIN(bst_node_desc, inputs, 16);
PIN(bst_node_desc, output, 24);
PIN(bst_node_desc, attrs, 32);
PIN(bst_node_desc, variant, 40);
PIN(bst_node_desc, reserved, 44);
PIN_SIZE(bst_node_desc, 48);

PIN(bst_kernel_variant, struct_size, 0);
PIN(bst_kernel_variant, reserved, 4);
PIN(bst_kernel_variant, name, 8);
PIN(bst_kernel_variant, source_hash, 56);
PIN_SIZE(bst_kernel_variant, 64);

PIN(bst_device_info, struct_size, 0);
PIN(bst_device_info, kind, 4);
PIN(bst_device_info, name, 8);
PIN(bst_device_info, vendor, 136);
PIN(bst_device_info, driver_version, 200);
PIN(bst_device_info, memory_bytes, 264);
PIN(bst_device_info, max_alloc_bytes, 272);
PIN(bst_device_info, max_binding_bytes, 280);
PIN(bst_device_info, unified_memory, 288);
PIN(bst_device_info, self_threaded, 289);
PIN(bst_device_info, reserved, 290);
PIN(bst_device_info, fingerprint, 296);
PIN_SIZE(bst_device_info, 304);

PIN(bst_run_params, struct_size, 0);
PIN(bst_run_params, reserved, 4);
PIN(bst_run_params, n_tokens, 8);
PIN(bst_run_params, n_kv, 16);
PIN(bst_run_params, pos, 24);
PIN_SIZE(bst_run_params, 32);

PIN(bst_partition_desc, struct_size, 0);
PIN(bst_partition_desc, n_nodes, 4);
PIN(bst_partition_desc, nodes, 8);
PIN(bst_partition_desc, n_bindings, 16);
PIN(bst_partition_desc, reserved, 20);
PIN_SIZE(bst_partition_desc, 24);

PIN(bst_host_api, struct_size, 0);
PIN(bst_host_api, abi_version, 4);
PIN(bst_host_api, log, 8);
PIN(bst_host_api, set_error, 16);
PIN(bst_host_api, alloc, 24);
PIN(bst_host_api, free, 32);
PIN(bst_host_api, parallel_for, 40);
PIN(bst_host_api, num_workers, 48);
PIN(bst_host_api, dequantize, 56);
PIN(bst_host_api, quantize, 64);
PIN(bst_host_api, fault, 72);
PIN_SIZE(bst_host_api, 80);

PIN(bst_backend_api, struct_size, 0);
PIN(bst_backend_api, abi_version, 4);
PIN(bst_backend_api, name, 8);
PIN(bst_backend_api, version, 16);
PIN(bst_backend_api, ctx, 24);
PIN(bst_backend_api, destroy, 32);
PIN(bst_backend_api, enumerate, 40);
PIN(bst_backend_api, device_open, 48);
PIN(bst_backend_api, device_close, 56);
PIN(bst_backend_api, set_num_threads, 64);
PIN(bst_backend_api, query, 72);
PIN(bst_backend_api, buffer_alloc, 80);
PIN(bst_backend_api, buffer_free, 88);
PIN(bst_backend_api, buffer_write, 96);
PIN(bst_backend_api, buffer_read, 104);
PIN(bst_backend_api, buffer_copy, 112);
PIN(bst_backend_api, buffer_map, 120);
PIN(bst_backend_api, prepare_weight, 128);
PIN(bst_backend_api, compile, 136);
PIN(bst_backend_api, executable_free, 144);
PIN(bst_backend_api, execute, 152);
PIN(bst_backend_api, last_execute_ns, 160);
PIN(bst_backend_api, event_create, 168); /* v2 */
PIN(bst_backend_api, event_destroy, 176);
PIN(bst_backend_api, execute_async, 184);
PIN(bst_backend_api, event_wait, 192);
PIN(bst_backend_api, node_timing, 200); /* v3 */
PIN(bst_backend_api, node_times, 208);
PIN_SIZE(bst_backend_api, 216);

PIN(bst_event_point, struct_size, 0); /* v2 */
PIN(bst_event_point, reserved, 4);
PIN(bst_event_point, event, 8);
PIN(bst_event_point, value, 16);
PIN_SIZE(bst_event_point, 24);

PIN(bst_node_time, start_ns, 0); /* v3 */
PIN(bst_node_time, ns, 8);
PIN_SIZE(bst_node_time, 16);

/* Public embedding structs (bastion.h): same growth rule, since applications fill them. */
PIN(bst_context_options, struct_size, 0);
PIN(bst_context_options, n_threads, 4);
PIN(bst_context_options, backends, 8);
PIN(bst_context_options, plugin_paths, 16);
PIN(bst_context_options, tune_mode, 24); /* v2 */
PIN(bst_context_options, no_cache, 28);
PIN(bst_context_options, tune_db_path, 32);
PIN_SIZE(bst_context_options, 40);

PIN(bst_plugin_record, struct_size, 0);
PIN(bst_plugin_record, state, 4);
PIN(bst_plugin_record, name, 8);
PIN(bst_plugin_record, path, 16);
PIN(bst_plugin_record, version, 24);
PIN(bst_plugin_record, detail, 32);
PIN(bst_plugin_record, abi_version, 40);
PIN(bst_plugin_record, n_devices, 44);
PIN_SIZE(bst_plugin_record, 48);

#else
/* Other data models: at least the invariant every reader relies on. */
PIN(bst_backend_api, struct_size, 0);
PIN(bst_host_api, struct_size, 0);
PIN(bst_device_info, struct_size, 0);
#endif

/* ISO C needs at least one declaration in a translation unit. */
typedef int bsti_abi_check_unit;
