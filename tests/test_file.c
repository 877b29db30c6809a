/* test_file.c: vl_open_regular and vl_read_file (loader/file.c): inputs that are not regular
 * files are refused at once, never waited on (a FIFO without a writer used to block open()
 * forever). The watchdog turns a regression into a prompt failure. */
#include "loader/loader.h"
#include "vltest.h"
#include "vltest_fs.h"

static void expect_refused(const char *path, const char *needle) {
    int fd = 123;
    vl_error_clear();
    VT_CHECK(vl_open_regular(path, "shard", &fd, NULL) != 0 && fd == -1);
    VT_CHECKF(strstr(vl_error_get(), needle) && strstr(vl_error_get(), path),
              "error \"%s\" lacks \"%s\" or the path", vl_error_get(), needle);
    char *text = (char *)1;
    vl_error_clear();
    VT_CHECK(vl_read_file(path, 1 << 20, &text, NULL) != 0 && text == NULL);
    VT_CHECKF(strstr(vl_error_get(), needle), "read_file error \"%s\"", vl_error_get());
}

int main(void) {
    vt_tmp_init("vl_test_file");
    vt_watchdog(60);
    const char *fifo = vt_tpath("fifo"), *file = vt_tpath("file.json");
    vt_mkfifo(fifo);
    expect_refused(fifo, "FIFO");
    expect_refused(vt_tmp_root, "directory");
    expect_refused("/dev/null", "device");
    expect_refused(vt_tpath("missing"), "cannot open");

    vt_write_text(file, "{\"a\": 1}");
    int fd = -1;
    int64_t size = -1;
    vl_error_clear();
    VT_CHECK(vl_open_regular(file, "config", &fd, &size) == 0 && fd >= 0 && size == 8);
    char buf[8];
    VT_CHECK(vl_read_fd(fd, file, buf, 8) == 0 && memcmp(buf, "{\"a\": 1}", 8) == 0);
    /* reading past the end is a short read: an error naming the file */
    VT_CHECK(vl_read_fd(fd, file, buf, 1) != 0 && strstr(vl_error_get(), file));
    close(fd);
    char *text = NULL;
    size_t len = 0;
    vl_error_clear();
    VT_CHECK(vl_read_file(file, 8, &text, &len) == 0 && len == 8 && text[8] == '\0');
    free(text);
    VT_CHECK(vl_read_file(file, 7, &text, &len) != 0 && strstr(vl_error_get(), "8 bytes"));

    vt_rm_tree(vt_tmp_root);
    return vt_finish();
}
