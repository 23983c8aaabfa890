/* HDF5 arrays for score output and reference data (see logits_file.h). */
#include "io/logits_file.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Status logits_file_write(const char *path, const float *logits, int64_t rows, int64_t cols) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  char partial[4096];
  snprintf(partial, sizeof partial, "%s.partial", path);
  hid_t file = H5Fcreate(partial, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_IO_ERROR, "cannot create %s", partial);
  hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
  hid_t space = H5Screate_simple(2, dims, NULL);
  hid_t dset = H5Dcreate2(file, "logits", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = dset < 0 ? -1 : H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, logits);
  if (dset >= 0) H5Dclose(dset);
  H5Sclose(space);
  if (H5Fclose(file) < 0) err = -1;
  if (err < 0) {
    remove(partial);
    return status_error(STATUS_IO_ERROR, "cannot write %s (disk full?)", path);
  }
  if (rename(partial, path) != 0) return status_error(STATUS_IO_ERROR, "cannot rename %s: %s", partial, strerror(errno));
  return STATUS_OK;
}

static Status read_dataset(const char *path, const char *dataset, hid_t mem_type, size_t elem, void **data_out,
                           int64_t dims_out[2]) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_IO_ERROR, "cannot open %s as HDF5", path);
  hid_t dset = H5Dopen2(file, dataset, H5P_DEFAULT);
  Status st = STATUS_OK;
  if (dset < 0) {
    H5Fclose(file);
    return status_error(STATUS_BAD_FORMAT, "%s: no dataset %s", path, dataset);
  }
  hid_t space = H5Dget_space(dset);
  hsize_t dims[2] = {1, 1};
  const int ndims = H5Sget_simple_extent_ndims(space);
  if (ndims < 1 || ndims > 2 || H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    st = status_error(STATUS_BAD_FORMAT, "%s: dataset %s must have 1 or 2 dimensions", path, dataset);
  }
  void *data = st == STATUS_OK ? malloc((size_t)(dims[0] * (ndims == 2 ? dims[1] : 1)) * elem + 1) : NULL;
  if (st == STATUS_OK && (!data || H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)) {
    st = status_error(STATUS_IO_ERROR, "%s: cannot read dataset %s", path, dataset);
  }
  H5Sclose(space);
  H5Dclose(dset);
  H5Fclose(file);
  if (st != STATUS_OK) {
    free(data);
    return st;
  }
  dims_out[0] = (int64_t)dims[0];
  dims_out[1] = ndims == 2 ? (int64_t)dims[1] : 1;
  *data_out = data;
  return STATUS_OK;
}

Status h5_read_floats(const char *path, const char *dataset, float **data_out, int64_t dims_out[2]) {
  return read_dataset(path, dataset, H5T_NATIVE_FLOAT, sizeof(float), (void **)data_out, dims_out);
}

Status h5_read_ints(const char *path, const char *dataset, int32_t **data_out, int64_t *count_out) {
  int64_t dims[2];
  Status st = read_dataset(path, dataset, H5T_NATIVE_INT32, sizeof(int32_t), (void **)data_out, dims);
  if (st == STATUS_OK) *count_out = dims[0] * dims[1];
  return st;
}
