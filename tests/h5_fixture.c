/* Test fixture tool for HDF5 files (tests/cli.sh):
 *   h5_fixture ints FILE DATASET           print an integer dataset as "1,2,3"
 *   h5_fixture set-u64-attr FILE NAME VAL  overwrite a u64 attribute on the root group
 *   h5_fixture declare-u8 FILE NAME BYTES  replace dataset NAME by a u8 dataset of BYTES that
 *                                          stores nothing (the file stays small) */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_ints(const char *path, const char *name) {
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t dset = file < 0 ? -1 : H5Dopen2(file, name, H5P_DEFAULT);
  if (dset < 0) return 2;
  hid_t space = H5Dget_space(dset);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  int *v = malloc((size_t)n * sizeof *v);
  if (H5Dread(dset, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) return 2;
  for (hssize_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", v[i]);
  printf("\n");
  free(v);
  H5Sclose(space);
  H5Dclose(dset);
  H5Fclose(file);
  return 0;
}

static int set_u64_attr(const char *path, const char *name, unsigned long long value) {
  hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0) return 2;
  hid_t attr = H5Aopen_by_name(file, "/", name, H5P_DEFAULT, H5P_DEFAULT);
  uint64_t v = value;
  const int ok = attr >= 0 && H5Awrite(attr, H5T_NATIVE_UINT64, &v) >= 0;
  if (attr >= 0) H5Aclose(attr);
  H5Fclose(file);
  return ok ? 0 : 2;
}

static int declare_u8(const char *path, const char *name, unsigned long long num_bytes) {
  hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  if (file < 0) return 2;
  if (H5Lexists(file, name, H5P_DEFAULT) > 0) H5Ldelete(file, name, H5P_DEFAULT);
  const hsize_t dims[1] = {num_bytes};
  hid_t space = H5Screate_simple(1, dims, NULL);
  hid_t dset = H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const int ok = dset >= 0;
  if (ok) H5Dclose(dset);
  H5Sclose(space);
  H5Fclose(file);
  return ok ? 0 : 2;
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "ints")) return print_ints(argv[2], argv[3]);
  if (argc == 5 && !strcmp(argv[1], "set-u64-attr")) return set_u64_attr(argv[2], argv[3], strtoull(argv[4], NULL, 10));
  if (argc == 5 && !strcmp(argv[1], "declare-u8")) return declare_u8(argv[2], argv[3], strtoull(argv[4], NULL, 10));
  fprintf(stderr, "usage: h5_fixture ints FILE DATASET | set-u64-attr FILE NAME VALUE | declare-u8 FILE NAME BYTES\n");
  return 2;
}
