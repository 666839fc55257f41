// Check macro for CUPTI calls (ridgeline_cupti only): a failure throws counters_unavailable when it
// means the counters cannot be used here, std::runtime_error with expression, file and line
// otherwise (mapping in counters.cpp, tested without CUPTI). The _WARN_NOEXCEPT variant, for
// destructors only, logs and goes on: teardown after a refused setup (counters held by another
// profiler) fails too, and must not turn a one-line counters_unavailable into an abort.
#pragma once

#include <cupti_result.h>

#include <cstdio>

#include "ridgeline/telemetry/counters.hpp"

static_assert(CUPTI_ERROR_INSUFFICIENT_PRIVILEGES ==
              ridgeline::metrics::cupti_code::insufficient_privileges);
static_assert(CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED ==
              ridgeline::metrics::cupti_code::multiple_subscribers_not_supported);
static_assert(CUPTI_ERROR_HARDWARE_BUSY == ridgeline::metrics::cupti_code::hardware_busy);
static_assert(CUPTI_ERROR_INVALID_OPERATION == ridgeline::metrics::cupti_code::invalid_operation);
static_assert(CUPTI_ERROR_NOT_INITIALIZED == ridgeline::metrics::cupti_code::not_initialized);
static_assert(CUPTI_ERROR_NOT_SUPPORTED == ridgeline::metrics::cupti_code::not_supported);
static_assert(CUPTI_ERROR_INVALID_CHIP_NAME == ridgeline::metrics::cupti_code::invalid_chip_name);
static_assert(CUPTI_ERROR_MIG_DEVICE_NOT_SUPPORTED ==
              ridgeline::metrics::cupti_code::mig_device_not_supported);
static_assert(CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES ==
              ridgeline::metrics::cupti_code::virtualized_device_insufficient_privileges);
static_assert(CUPTI_ERROR_UNKNOWN == ridgeline::metrics::cupti_code::unknown);

#define RIDGELINE_CUPTI_CHECK(expr)                                                                \
  do {                                                                                             \
    const CUptiResult ridgeline_cupti_ = (expr);                                                   \
    if (ridgeline_cupti_ != CUPTI_SUCCESS)                                                         \
      ::ridgeline::metrics::throw_cupti_error(static_cast<int>(ridgeline_cupti_), #expr, __FILE__, \
                                              __LINE__);                                           \
  } while (false)

#define RIDGELINE_CUPTI_WARN_NOEXCEPT(expr)                                                    \
  do {                                                                                         \
    const CUptiResult ridgeline_cupti_ = (expr);                                               \
    if (ridgeline_cupti_ != CUPTI_SUCCESS)                                                     \
      std::fprintf(                                                                            \
          stderr, "ridgeline: CUPTI teardown failed (%s) in %s at %s:%d\n",                    \
          ::ridgeline::metrics::cupti_result_name(static_cast<int>(ridgeline_cupti_)).c_str(), \
          #expr, __FILE__, __LINE__);                                                          \
  } while (false)
