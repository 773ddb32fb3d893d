# CMake-based ports (esp32, rp2): USER_C_MODULES=/path/to/tinymlaas/firmware/micropython/usermod/micropython.cmake
include(${CMAKE_CURRENT_LIST_DIR}/tinyml/micropython.cmake)
