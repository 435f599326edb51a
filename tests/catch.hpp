#pragma once
// One include for Catch2 3 (<catch2/catch_test_macros.hpp>, preferred) and Catch2 2.13 (Debian 12's main suite).
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/generators/catch_generators_range.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>
#define TOKENPRUNE_CATCH3 1
#else
#include <catch2/catch.hpp>
#endif
