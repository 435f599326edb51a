// Catch2 2 needs a translation unit that defines main; Catch2 3 links Catch2::Catch2WithMain instead.
#if __has_include(<catch2/catch_test_macros.hpp>)
#else
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
