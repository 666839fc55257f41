// Every result format's typed reader and writer, in one include (see schema.hpp for the rules they
// share and docs/results-formats.md for the fields).
#pragma once

#include "ridgeline/core/schema.hpp"
#include "ridgeline/core/schemas/accuracy.hpp"
#include "ridgeline/core/schemas/diverge.hpp"
#include "ridgeline/core/schemas/environment.hpp"
#include "ridgeline/core/schemas/gpu_profile.hpp"
#include "ridgeline/core/schemas/history_trend.hpp"
#include "ridgeline/core/schemas/load_results.hpp"
#include "ridgeline/core/schemas/measurement.hpp"
#include "ridgeline/core/schemas/plan.hpp"
#include "ridgeline/core/schemas/roofline.hpp"
#include "ridgeline/core/schemas/serving_accuracy.hpp"
#include "ridgeline/core/schemas/serve_record.hpp"
#include "ridgeline/core/schemas/serving_results.hpp"
#include "ridgeline/core/schemas/sweep.hpp"
